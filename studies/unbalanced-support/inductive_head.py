"""The inductive head (the gate's answer) against support-init on val cells of unequal and
equal supports (all of each episode's queries; the head reads none of them), with variants:
without the class weights, 10 epochs, Adam 1e-3.

    EPISODES=DIR OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python \\
        studies/unbalanced-support/inductive_head.py > inductive_head.txt
"""
import os
import dataclasses, torch
from pathlib import Path
from anyshot.feature_cache import FeatureCache
from anyshot.methods.presets import RECOMMENDED, SUPPORT_INIT
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import dataset_split, embed_episodes
from realistic_grid import DOMAINS, cell_episodes, episode_tensors, grid
torch.set_num_threads(1)
ind = RECOMMENDED.inductive()
M = {"si": SUPPORT_INIT, "ind": ind, "ind-unweighted": dataclasses.replace(ind, balanced_support=False),
     "ind-10ep": dataclasses.replace(ind, epochs=10), "ind-lr3": dataclasses.replace(ind, lr=1e-3)}
for cn in ("mini-unbalanced-5w1-20x4s", "mini-unbalanced-5w1x2-5x3s", "mini-unbalanced-5w1-2-5-10-20s", "mini-balanced-5w1s", "mini-balanced-5w5s"):
    d = DOMAINS["mini"]; data = dataset_split(DATA_ROOT, d.dataset, "val")
    cell = next(c for c in grid({"mini": 16, "omni": 20}, None) if c.name == cn)
    specs = cell_episodes(cell, data, 0, Path(os.environ.get("EPISODES", "benchmarks/results/realistic-grid-episodes")), "val")[0]
    f = embed_episodes(FeatureCache(FEATURE_CACHE, channels_last=d.channels_last), d.network(), data, specs).features
    s, t, q, tr = episode_tensors(f, specs)
    print(cn, *(f"{n} {100*float((m.fit_features(s,t,q,ways=cell.ways).query_logits.argmax(-1)==tr).float().mean()):.1f}" for n, m in M.items()), flush=True)
