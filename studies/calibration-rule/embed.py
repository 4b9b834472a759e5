"""Fill the feature cache with the rows ``benchmarks/calibration.py`` needs on a split (its 12
cells, 300 episodes, seed 0), without running any method (the shared data's files were re-made,
so their cache keys, which hold each file's mtime, changed)."""

import sys
from pathlib import Path

import numpy as np

from anyshot.feature_cache import FeatureCache
from calibration import cells
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import dataset_split, embed_episodes
from realistic_grid import DOMAINS

split = sys.argv[1]
for name, domain in DOMAINS.items():
    data = dataset_split(DATA_ROOT, domain.dataset, split)
    labels = np.asarray(data.labels)
    specs = [s for c in cells(300) if c.domain == name for s in c.sampler(labels, c.seed(0)).take(c.episodes)]
    cache = FeatureCache(FEATURE_CACHE, channels_last=domain.channels_last)
    done = embed_episodes(cache, domain.network(), data, specs)
    print(name, split, "computed", done.computed, f"{done.seconds:.0f}s", flush=True)
