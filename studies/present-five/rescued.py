"""The episodes ``tsallis_gated`` gives the Tsallis head (VALIDATION classes only): per cell,
for each such episode, the gate's answer's and the Tsallis head's predicted classes, their
ratio, the share of queries on which the two answers agree, and the accuracy change.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/present-five/rescued.py \
        --split val --cells "mini-present-16w1s-k3,omni-manyway-160w1s" \
        --episodes-dir /tmp/grid-episodes --output OUT.json
"""
from __future__ import annotations

import dataclasses
import json

import torch

import realistic_grid as rg
from anyshot.evaluation.cached import episode_tensors
from anyshot.feature_cache import FeatureCache
from anyshot.methods.head import predicted_classes
from anyshot.methods.presets import RECOMMENDED
from harness.episodes import embed_episodes


def main() -> None:
    args = rg.parse_args()
    torch.set_num_threads(args.threads)
    datasets = {n: rg.dataset_split(args.data_root, d.dataset, args.split) for n, d in rg.DOMAINS.items()}
    runnable, _ = rg.plan(args, datasets)
    before = dataclasses.replace(RECOMMENDED, tsallis_gated=False)
    out = {}
    for cell, (specs, _, _) in runnable:
        domain = rg.DOMAINS[cell.domain]
        cache = FeatureCache(args.cache_dir, channels_last=domain.channels_last)
        feats = embed_episodes(cache, domain.network(), datasets[cell.domain], iter(specs)).features
        support, targets, query, qt = episode_tensors(feats, specs)
        ways, n = len(specs[0].classes), len(specs)
        old = before.fit_features(support, targets, query, ways=ways, episodes_per_chunk=n)
        new = RECOMMENDED.fit_features(support, targets, query, ways=ways, episodes_per_chunk=n)
        rescued = old.gated & ~new.gated
        po, pn = old.query_logits.argmax(-1), new.query_logits.argmax(-1)
        ko, kn = predicted_classes(old.query_logits), predicted_classes(new.query_logits)
        agree = (po == pn).double().mean(-1)
        gain = ((pn == qt).double().mean(-1) - (po == qt).double().mean(-1)) * 100
        rows = [(float(ko[e]), float(kn[e]), float(kn[e] / ko[e]), float(agree[e]), float(gain[e]))
                for e in rescued.nonzero().squeeze(1).tolist()]
        out[cell.name] = rows
        print(cell.name, "rescued", len(rows))
        for r in rows:
            print(f"   gate {r[0]:6.1f} tsallis {r[1]:6.1f} ratio {r[2]:.2f} agree {r[3]:.2f} gain {r[4]:+6.1f}")
        with open(args.output, "w") as handle:
            json.dump(out, handle)


if __name__ == "__main__":
    main()
