"""Unequal supports with few query images (val; not a grid cell): each episode of three
unbalanced cells keeps 5 or 20 of its queries (a seeded draw). Support-init, the default, the
default without ``unequal_balance_test``, and the inductive head (the gate's answer), with the
default's paired difference to support-init (± 95% CI over episodes).

    EPISODES=DIR OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python \\
        studies/unbalanced-support/tiny_queries.py > tiny_queries.txt
"""
import dataclasses
import os
from pathlib import Path

import torch

from anyshot.feature_cache import FeatureCache
from anyshot.methods.presets import RECOMMENDED, SUPPORT_INIT
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import dataset_split, embed_episodes
from realistic_grid import DOMAINS, cell_episodes, episode_tensors, grid

torch.set_num_threads(1)
EPISODES = Path(os.environ.get("EPISODES", "benchmarks/results/realistic-grid-episodes"))
METHODS = {
    "support-init": SUPPORT_INIT,
    "default": RECOMMENDED,
    "no-second-look": dataclasses.replace(RECOMMENDED, unequal_balance_test=False),
    "inductive": RECOMMENDED.inductive(),
}
CELLS = ("mini-unbalanced-5w1-20x4s", "mini-unbalanced-5w1x2-5x3s", "omni-unbalanced-5w1x2-5x3s")
for cell_name in CELLS:
    domain = DOMAINS[cell_name.split("-")[0]]
    data = dataset_split(DATA_ROOT, domain.dataset, "val")
    cell = next(c for c in grid({"mini": 16, "omni": 20}, None) if c.name == cell_name)
    specs = cell_episodes(cell, data, 0, EPISODES, "val")[0]
    cache = FeatureCache(FEATURE_CACHE, channels_last=domain.channels_last)
    features = embed_episodes(cache, domain.network(), data, specs).features
    support, targets, query, truth = episode_tensors(features, specs)
    generator = torch.Generator().manual_seed(0)
    for kept in (5, 20):
        order = torch.stack([torch.randperm(query.shape[1], generator=generator) for _ in specs])
        index = order[:, :kept]
        rows = torch.gather(query, 1, index[..., None].expand(-1, -1, query.shape[2]))
        labels = torch.gather(truth, 1, index)
        right = {}
        for name, method in METHODS.items():
            logits = method.fit_features(support, targets, rows, ways=cell.ways).query_logits
            right[name] = (logits.argmax(-1) == labels).double().mean(1)  # [E]
        gap = 100 * (right["default"] - right["support-init"])
        half = 1.96 * float(gap.std()) / len(specs) ** 0.5
        words = "  ".join(f"{n} {100 * float(r.mean()):.1f}" for n, r in right.items())
        print(f"{cell_name} {kept:2d} queries  {words}  default - support-init "
              f"{float(gap.mean()):+.1f} ± {half:.1f}", flush=True)
