"""Candidate answers for the gate (episodes with too few queries) on val cells of unequal and
equal supports, each scored on all of an episode's queries (none of them reads the queries),
with the paired difference to support-init (± 95% CI over episodes) and the recall of the
support's smallest class:

* support-init and the inductive head (the default's gate answer before ``shared_spread``);
* ``ind-shared-spread``: the inductive head fine-tuned on the support filled up with its
  shared within-class spread, written here on the raw features (every class to the largest
  class's count with rows ``mean_k + (x_j - mean_c(j))``); the product's
  :func:`anyshot.methods.head.with_shared_spread` does it on the unit rows (``ind-product``:
  the inductive head with ``shared_spread``, as the default's gate answers);
* ``mean-si-ind``: the mean of the two's probabilities; ``wise-s``: their weights and biases
  interpolated, share ``s`` of the inductive head's (WiSE-FT).

    EPISODES=DIR OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python \\
        studies/unbalanced-support/gate_answer.py > gate_answer.txt
"""
import dataclasses
import os
import sys
from pathlib import Path

import torch

from anyshot.feature_cache import FeatureCache
from anyshot.methods.cosine import cosine_logits, unit_embeddings
from anyshot.methods.presets import RECOMMENDED, SUPPORT_INIT
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import dataset_split, embed_episodes
from realistic_grid import DOMAINS, cell_episodes, episode_tensors, grid

torch.set_num_threads(1)
EPISODES = Path(os.environ.get("EPISODES", "benchmarks/results/realistic-grid-episodes"))
IND = RECOMMENDED.inductive()
METHODS = {
    "support-init": SUPPORT_INIT,
    "inductive": IND,
}
CELLS = sys.argv[1:] or [
    "mini-unbalanced-5w1-20x4s", "mini-unbalanced-5w1x2-5x3s", "mini-unbalanced-5w1-2-5-10-20s",
    "mini-unbalanced-16w1x8-5x8s", "mini-balanced-5w1s", "mini-balanced-5w5s",
    "omni-unbalanced-5w1-10x4s", "omni-unbalanced-5w1x2-5x3s", "omni-unbalanced-5w1-2-3-5-10s",
    "omni-unbalanced-20w1x10-5x10s", "omni-balanced-5w1s", "omni-balanced-5w5s",
]


def shared_spread(support, targets, ways):
    """Every class filled up to the largest class's count with rows ``mean_k + (x_j -
    mean_c(j))``: the other classes' residuals (x_j of classes of 2+ rows, in turn) moved to
    class k's mean (the within-class spread shared by the classes, as class means assume)."""
    out_s, out_t = [], []
    for s, t in zip(support, targets):
        counts = torch.bincount(t, minlength=ways)
        means = torch.stack([s[t == k].mean(0) for k in range(ways)])
        donors = (counts[t] >= 2).nonzero().squeeze(1)
        residual = s[donors] - means[t[donors]]
        rows, labels, used = [s], [t], 0
        for k in range(ways):
            need = int(counts.max() - counts[k])
            pick = torch.arange(used, used + need) % len(donors)
            used += need
            rows.append(means[k] + residual[pick]); labels.append(torch.full((need,), k))
        out_s.append(torch.cat(rows)); out_t.append(torch.cat(labels))
    return torch.stack(out_s), torch.stack(out_t)


def score(logits, truth, small):
    right = (logits.argmax(-1) == truth).double()
    acc = right.mean(1)
    hit = (right * small).sum(1) / small.sum(1).clamp_min(1)
    return acc, hit


for cell_name in CELLS:
    domain = DOMAINS[cell_name.split("-")[0]]
    data = dataset_split(DATA_ROOT, domain.dataset, "val")
    cell = next(c for c in grid({"mini": 16, "omni": 20}, None) if c.name == cell_name)
    specs = cell_episodes(cell, data, 0, EPISODES, "val")[0]
    cache = FeatureCache(FEATURE_CACHE, channels_last=domain.channels_last)
    features = embed_episodes(cache, domain.network(), data, specs).features
    support, targets, query, truth = episode_tensors(features, specs)
    counts = torch.nn.functional.one_hot(targets, cell.ways).sum(1)  # [E, K]
    smallest = counts.argmin(-1)  # [E]
    small = (truth == smallest[:, None]).double()
    heads = {n: m.fit_features(support, targets, query, ways=cell.ways) for n, m in METHODS.items()}
    big_s, big_t = shared_spread(support, targets, cell.ways)
    heads["ind-shared-spread"] = IND.fit_features(big_s, big_t, query, ways=cell.ways)
    filled = dataclasses.replace(IND, shared_spread=True)
    heads["ind-product"] = filled.fit_features(support, targets, query, ways=cell.ways)
    logits = {n: h.query_logits for n, h in heads.items()}
    p = {n: l.softmax(-1) for n, l in logits.items()}
    logits["mean-si-ind"] = (p["support-init"] + p["inductive"]).log()
    unit = unit_embeddings(query, relu=IND.relu)
    si, ind = heads["support-init"], heads["inductive"]
    for share in (0.25, 0.5, 0.75):  # weight-space interpolation (WiSE-FT) at IND's temperature
        w = (1 - share) * si.weight + share * ind.weight
        b = (1 - share) * si.bias + share * ind.bias
        logits[f"wise-{share:g}"] = cosine_logits(unit, w, b, IND.temperature)
    base, _ = score(logits["support-init"], truth, small)
    words = []
    for n, l in logits.items():
        acc, hit = score(l, truth, small)
        gap = 100 * (acc - base)
        half = 1.96 * float(gap.std()) / len(specs) ** 0.5
        words.append(f"{n} {100 * float(acc.mean()):.1f} ({float(gap.mean()):+.1f}±{half:.1f}; "
                     f"small {100 * float(hit.mean()):.0f})")
    print(cell_name, " | ".join(words), flush=True)
