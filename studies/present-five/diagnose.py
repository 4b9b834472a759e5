"""Where does the default lose to alpha-TIM on present-class cells? (VALIDATION classes only.)

Per cell of ``benchmarks/realistic_grid.py`` (same episode files): accuracy of the default,
its first head alone, the Tsallis head alone, alpha-TIM (``benchmarks/peers.py``), and how the
default's episodes were answered (Tsallis chosen / gated / guard), with the mean effective
number of predicted classes of each head.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/present-five/diagnose.py \
        --split val --cells mini-present-16w1s-k5 --episodes-dir /tmp/grid-episodes
"""
from __future__ import annotations

import json
import sys

import torch

import realistic_grid as rg
from anyshot.feature_cache import FeatureCache
from anyshot.methods.features import EpisodeRows
from anyshot.methods.head import _fit, predicted_classes
from anyshot.methods.presets import RECOMMENDED
from harness.episodes import embed_episodes
from peers import PEERS
from anyshot.evaluation.cached import episode_tensors


def acc(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == targets).double().mean(-1) * 100


PEER = "--no-peer" not in sys.argv
OUT: dict = {}


def cell_tensors(args, datasets, cell, specs):
    """``(support, targets, query, query targets, EpisodeRows)`` of a grid cell's episodes, from
    the shared feature cache (also used by ``studies/gated-tsallis/collect.py``)."""
    domain = rg.DOMAINS[cell.domain]
    cache = FeatureCache(args.cache_dir, channels_last=domain.channels_last)
    feats = embed_episodes(cache, domain.network(), datasets[cell.domain], iter(specs)).features
    support, targets, query, qt = episode_tensors(feats, specs)
    ways = len(specs[0].classes)
    return support, targets, query, qt, EpisodeRows(support.float(), targets, query.float(), ways)


def main() -> None:
    if not PEER:
        sys.argv.remove("--no-peer")
    args = rg.parse_args()
    torch.set_num_threads(args.threads)
    datasets = {n: rg.dataset_split(args.data_root, d.dataset, args.split) for n, d in rg.DOMAINS.items()}
    runnable, _ = rg.plan(args, datasets)
    training = RECOMMENDED.head_training
    for cell, (specs, _, _) in runnable:
        support, targets, query, qt, rows = cell_tensors(args, datasets, cell, specs)
        ways, shots = rows.ways, support.shape[1] / rows.ways
        fitted = RECOMMENDED.fit_features(support, targets, query, ways=ways, episodes_per_chunk=len(specs))
        first = _fit(training, rows)
        tsallis = _fit(training.tsallis(shots), rows)
        atim = PEERS["alpha-tim"](support, targets, query, ways) if PEER else tsallis.query_logits
        ts = fitted.tsallis if fitted.tsallis is not None else torch.zeros(len(specs), dtype=torch.bool)
        d, f, t, a = (acc(x, qt) for x in (fitted.query_logits, first.query_logits, tsallis.query_logits, atim))
        kf, kt, ka = (predicted_classes(x) for x in (first.query_logits, tsallis.query_logits, atim))
        print(f"{cell.name}: n={len(specs)} default {d.mean():.1f} first {f.mean():.1f} tsallis {t.mean():.1f} "
              f"alpha-tim {a.mean():.1f} | classes first {kf.mean():.1f} tsallis {kt.mean():.1f} atim {ka.mean():.1f}")
        gated, fb = fitted.gated, fitted.fallback
        guard = fb & ~gated
        for name, m in (("tsallis chosen", ts & ~fb), ("gated", gated), ("guard", guard),
                        ("first head", ~ts & ~fb)):
            if m.any():
                print(f"  {name:15s} {int(m.sum()):4d} eps: default {d[m].mean():.1f} first {f[m].mean():.1f} "
                      f"tsallis {t[m].mean():.1f} atim {a[m].mean():.1f} | K first {kf[m].mean():.1f} "
                      f"tsallis {kt[m].mean():.1f} atim {ka[m].mean():.1f}")
        sys.stdout.flush()
        OUT[cell.name] = {"K": ways, "Q": int(query.shape[1]), "shots": shots,
                          "default": d.tolist(), "first": f.tolist(), "tsallis": t.tolist(),
                          "kf": kf.tolist(), "kd": predicted_classes(fitted.query_logits).tolist(), "kt": kt.tolist(), "chosen": ts.tolist(),
                          "gated": gated.tolist(), "fallback": fb.tolist()}
        with open(args.output, "w") as handle:
            json.dump(OUT, handle)


if __name__ == "__main__":
    main()
