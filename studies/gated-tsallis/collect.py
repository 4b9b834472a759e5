"""Per-episode record of the default and the Tsallis head on realistic-grid cells (VALIDATION
classes only), to replay rules that give gated episodes the Tsallis head's answer.

Per episode: accuracy of the default, the Tsallis head alone (:meth:`HeadTraining.tsallis`)
and support-init; the default's masks (gated, fallback, Tsallis chosen); whether
support-init's predictions cover the classes (the guard's test); the queries the gate counts
and the effective number of classes the Tsallis head predicts for them; the agreement of the
Tsallis head with the default's answer.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/gated-tsallis/collect.py \
        --split val --cells "omni-" --episodes-dir /tmp/grid-episodes --output omni.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import realistic_grid as rg
from anyshot.methods.features import EpisodeRows
from anyshot.methods.head import _fit, inlier_queries, predicted_classes, support_init_head
from anyshot.methods.presets import RECOMMENDED
from anyshot.outliers import covering

sys.path.insert(0, str(Path(__file__).parents[1] / "present-five"))
from diagnose import cell_tensors  # noqa: E402  (a study script beside this one)


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
    return ((logits.argmax(-1) == targets).double().mean(-1) * 100).tolist()


def main() -> None:
    args = rg.parse_args()
    torch.set_num_threads(args.threads)
    datasets = {n: rg.dataset_split(args.data_root, d.dataset, args.split) for n, d in rg.DOMAINS.items()}
    runnable, _ = rg.plan(args, datasets)
    training = RECOMMENDED.head_training
    out: dict = {}
    for cell, (specs, _, _) in runnable:
        support, targets, query, qt, rows = cell_tensors(args, datasets, cell, specs)
        ways, shots = rows.ways, support.shape[1] / rows.ways
        record: dict = {"K": ways, "Q": int(query.shape[1]), "shots": shots, "default": [], "tsallis": [],
                        "si": [], "gated": [], "fallback": [], "chosen": [], "cover": [], "counted": [],
                        "kt": [], "agree": []}
        for start in range(0, len(specs), args.chunk):
            part = slice(start, start + args.chunk)
            r = EpisodeRows(rows.support[part], rows.targets[part], rows.query[part], ways)
            fitted = RECOMMENDED.fit_features(r.support, r.targets, r.query, ways=ways,
                                              episodes_per_chunk=args.chunk)
            tsallis = _fit(training.tsallis(shots), r)
            base = support_init_head(r, training.temperature, training.relu)
            keep = inlier_queries(r, training.gate_outlier_rate, training.relu).cpu()
            n = r.support.shape[0]
            none = torch.zeros(n, dtype=torch.bool)
            record["default"] += accuracy(fitted.query_logits, qt[part])
            record["tsallis"] += accuracy(tsallis.query_logits, qt[part])
            record["si"] += accuracy(base.query_logits, qt[part])
            record["gated"] += (none if fitted.gated is None else fitted.gated).tolist()
            record["fallback"] += (none if fitted.fallback is None else fitted.fallback).tolist()
            record["chosen"] += (none if fitted.tsallis is None else fitted.tsallis).tolist()
            record["cover"] += covering(base.query_logits.argmax(-1), ways).tolist()
            record["counted"] += keep.sum(1).tolist()
            record["kt"] += predicted_classes(tsallis.query_logits, keep).tolist()
            agree = (tsallis.query_logits.argmax(-1) == fitted.query_logits.argmax(-1)).double().mean(1)
            record["agree"] += agree.tolist()
        out[cell.name] = record
        g = torch.tensor(record["gated"])
        d, t = torch.tensor(record["default"]), torch.tensor(record["tsallis"])
        print(f"{cell.name:28s} n={len(specs)} default {d.mean():.1f} tsallis {t.mean():.1f} "
              f"gated {int(g.sum())}" + (f" (default {d[g].mean():.1f} tsallis {t[g].mean():.1f})" if g.any() else ""),
              flush=True)
        with open(args.output, "w") as handle:
            json.dump(out, handle)


if __name__ == "__main__":
    main()
