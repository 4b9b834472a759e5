"""Per-episode record of the default, its first head and the Tsallis head on realistic-grid
cells (VALIDATION classes only), to look for a per-episode signal of where the Tsallis head
beats the first head at several shots (Omniglot through the ImageNet network) and where it
does not (mini-ImageNet; one present class).

Per episode: accuracies (%) of the default, the first head alone (``_fit`` of the default's
training: the likelihood head), the Tsallis head alone and support-init; the default's masks
(gated, Tsallis chosen, fallback); the effective number of classes each head predicts for the
queries the gate counts; the agreements between the heads; the leave-one-out accuracy of the
support rows against their class means (shots >= 2; a label-free estimate of how well the
features separate the classes); the mean cosine between the class means.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/five-shot-tsallis/collect.py \
        --split val --cells "omni-present-*,omni-balanced-*" --episodes-dir /tmp/grid-episodes \
        --threads 1 --output omni.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import realistic_grid as rg
from anyshot.methods.features import EpisodeRows
from anyshot.methods.head import _fit, inlier_queries, predicted_classes, support_init_head
from anyshot.methods.presets import RECOMMENDED
from anyshot.outliers import class_means

sys.path.insert(0, str(Path(__file__).parents[1] / "present-five"))
from diagnose import cell_tensors  # noqa: E402  (a study script)


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
    return ((logits.argmax(-1) == targets).double().mean(-1) * 100).tolist()


def agree(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    return (a.argmax(-1) == b.argmax(-1)).double().mean(-1).tolist()


def loo_accuracy(rows: EpisodeRows) -> list[float]:
    """Leave-one-out nearest-class-mean accuracy of the support rows (NaN at one shot), in
    ``[E, S, K]`` memory: a row's own class mean is its class's sum minus itself."""
    unit = F.normalize(rows.support.clamp_min(0).double(), dim=-1)  # [E, S, D]
    one_hot = F.one_hot(rows.targets.long(), rows.ways).double()  # [E, S, K]
    if bool((one_hot.sum(1) < 2).any()):
        return [float("nan")] * rows.support.shape[0]
    sums = one_hot.transpose(1, 2) @ unit  # [E, K, D]
    dots = unit @ sums.transpose(1, 2)  # [E, S, K]
    norms2 = (sums * sums).sum(-1).unsqueeze(1).expand_as(dots)  # [E, S, K]
    own_dots = dots - one_hot  # x . (sum - x) = x . sum - 1 on the own class
    own_norms2 = norms2 - one_hot * (2 * dots - 1)
    cos = own_dots / own_norms2.clamp_min(1e-12).sqrt()
    return (cos.argmax(-1) == rows.targets).double().mean(1).tolist()


def mean_cosine(rows: EpisodeRows) -> list[float]:
    means = class_means(rows.support, rows.targets, rows.ways)  # [E, K, D]
    cos = means @ means.transpose(1, 2)
    k = rows.ways
    return ((cos.sum((1, 2)) - k) / (k * (k - 1))).tolist()


def main() -> None:
    args = rg.parse_args()
    torch.set_num_threads(args.threads)
    datasets = {n: rg.dataset_split(args.data_root, d.dataset, args.split) for n, d in rg.DOMAINS.items()}
    runnable, _ = rg.plan(args, datasets)
    training = RECOMMENDED.head_training
    out: dict = {}
    keys = ("default", "first", "tsallis", "si", "gated", "chosen", "fallback", "kf", "kt", "ks",
            "agree_ft", "agree_fs", "agree_ts", "agree_dt", "loo", "cos", "counted")
    for cell, (specs, _, _) in runnable:
        support, targets, query, qt, rows = cell_tensors(args, datasets, cell, specs)
        ways, shots = rows.ways, support.shape[1] / rows.ways
        record: dict = {"K": ways, "Q": int(query.shape[1]), "shots": shots, **{k: [] for k in keys}}
        for start in range(0, len(specs), args.chunk):
            part = slice(start, start + args.chunk)
            r = EpisodeRows(rows.support[part], rows.targets[part], rows.query[part], ways)
            fitted = RECOMMENDED.fit_features(r.support, r.targets, r.query, ways=ways,
                                              episodes_per_chunk=args.chunk)
            first = _fit(training, r)
            tsallis = _fit(training.tsallis(shots), r)
            base = support_init_head(r, training.temperature, training.relu)
            keep = inlier_queries(r, training.gate_outlier_rate, training.relu).cpu()
            none = torch.zeros(r.support.shape[0], dtype=torch.bool)
            t = qt[part]
            record["default"] += accuracy(fitted.query_logits, t)
            record["first"] += accuracy(first.query_logits, t)
            record["tsallis"] += accuracy(tsallis.query_logits, t)
            record["si"] += accuracy(base.query_logits, t)
            record["gated"] += (none if fitted.gated is None else fitted.gated).tolist()
            record["chosen"] += (none if fitted.tsallis is None else fitted.tsallis).tolist()
            record["fallback"] += (none if fitted.fallback is None else fitted.fallback).tolist()
            record["kf"] += predicted_classes(first.query_logits, keep).tolist()
            record["kt"] += predicted_classes(tsallis.query_logits, keep).tolist()
            record["ks"] += predicted_classes(base.query_logits, keep).tolist()
            record["agree_ft"] += agree(first.query_logits, tsallis.query_logits)
            record["agree_fs"] += agree(first.query_logits, base.query_logits)
            record["agree_ts"] += agree(tsallis.query_logits, base.query_logits)
            record["agree_dt"] += agree(fitted.query_logits, tsallis.query_logits)
            record["loo"] += loo_accuracy(r)
            record["cos"] += mean_cosine(r)
            record["counted"] += keep.sum(1).tolist()
        out[cell.name] = record
        m = {k: torch.tensor(record[k], dtype=torch.float64).nanmean().item() for k in keys}
        print(f"{cell.name:28s} n={len(specs)} default {m['default']:.1f} first {m['first']:.1f} "
              f"tsallis {m['tsallis']:.1f} si {m['si']:.1f} loo {m['loo']:.2f} cos {m['cos']:.2f} "
              f"kf {m['kf']:.1f} kt {m['kt']:.1f}", flush=True)
        with open(args.output, "w") as handle:
            json.dump(out, handle)


if __name__ == "__main__":
    main()
