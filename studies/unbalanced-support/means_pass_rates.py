"""How often the balance test passes on the predictions of untrained class means (no
training), on val cells, the rows centred on the episode, on the support's class means, or not
centred. The first argument selects cells (realistic_grid.py's --cells patterns), the second,
optional, one domain (mini or omni).

    EPISODES=DIR OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python \
        studies/unbalanced-support/means_pass_rates.py \
        "unbalanced,present,balanced,dirichlet,manyway" > means_pass_rates.txt
"""
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from anyshot.feature_cache import FeatureCache
from anyshot.methods.balance import looks_balanced
from anyshot.methods.cosine import transductive_center, unit_embeddings, class_means
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import dataset_split, embed_episodes
from realistic_grid import DOMAINS, cell_episodes, episode_tensors, grid, select

torch.set_num_threads(1)
EPISODES = Path(os.environ.get("EPISODES", "benchmarks/results/realistic-grid-episodes"))
pattern = sys.argv[1]
for name, domain in DOMAINS.items():
    if len(sys.argv) > 2 and name != sys.argv[2]:
        continue
    data = dataset_split(DATA_ROOT, domain.dataset, "val")
    cells = select(grid({"mini": 16, "omni": 20, name: data.num_classes}, None), pattern)
    cells = [c for c in cells if c.name.startswith(name)]
    if not cells:
        continue
    cache = FeatureCache(FEATURE_CACHE, channels_last=domain.channels_last)
    drawn = {}
    for c in cells:
        try:
            drawn[c.name] = cell_episodes(c, data, 0, EPISODES, "val")[0]
        except Exception as e:
            print(c.name, "skipped", e)
    every = [s for specs in drawn.values() for s in specs]
    features = embed_episodes(cache, domain.network(), data, every).features
    for cell, specs in drawn.items():
        # group by shape
        res = {"episode": [], "support": [], "none": []}
        by = {}
        for s in specs:
            by.setdefault((len(s.support), len(s.query)), []).append(s)
        for group in by.values():
            support, targets, query, truth = episode_tensors(features, group)
            ways = len(group[0].classes)
            for on in ("episode", "support", "none"):
                if on == "none":
                    s_u = unit_embeddings(support); q_u = unit_embeddings(query)
                else:
                    c = transductive_center(on, support, targets, query, ways)
                    s_u = unit_embeddings(support, center=c); q_u = unit_embeddings(query, center=c)
                w = class_means(s_u, targets, ways, relu=False)
                pred = torch.einsum("eqd,ekd->eqk", q_u, w).argmax(-1)
                counts = F.one_hot(pred, ways).sum(1)
                res[on].append(looks_balanced(counts).double())
        line = " ".join(f"{on}={100*float(torch.cat(v).mean()):5.1f}" for on, v in res.items())
        print(f"{cell:34s} {line}", flush=True)
