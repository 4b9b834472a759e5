"""The share of omni-unbalanced-5w1-10x4s episodes the default's gate answers (the inductive
head), val and test: 50 queries over 5 classes are 10 per class, against the gate's
``6 + shots / 2`` = 10.1 with ``shots = S / K = 8.2``.

    EPISODES=DIR OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python \\
        studies/unbalanced-support/gated_share.py > gated_share.txt
"""
import os
from pathlib import Path

import torch

from anyshot.feature_cache import FeatureCache
from anyshot.methods.presets import RECOMMENDED
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import dataset_split, embed_episodes
from realistic_grid import DOMAINS, cell_episodes, episode_tensors, grid, select

torch.set_num_threads(1)
EPISODES = Path(os.environ.get("EPISODES", "benchmarks/results/realistic-grid-episodes"))
domain = DOMAINS["omni"]
for split, mini_ways in (("val", 16), ("test", 20)):
    data = dataset_split(DATA_ROOT, domain.dataset, split)
    cell = select(grid({"mini": mini_ways, "omni": 20}, None), "omni-unbalanced-5w1-10x4s")[0]
    specs = cell_episodes(cell, data, 0, EPISODES, split)[0]
    cache = FeatureCache(FEATURE_CACHE, channels_last=domain.channels_last)
    features = embed_episodes(cache, domain.network(), data, specs).features
    support, targets, query, _ = episode_tensors(features, specs)
    fitted = RECOMMENDED.fit_features(support, targets, query, ways=5)
    gated = fitted.gated.float().mean() if fitted.gated is not None else torch.tensor(0.0)
    print(f"{split}: the gate answered {100 * float(gated):.1f}% of {len(specs)} episodes")
