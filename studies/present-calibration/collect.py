"""Collect, per VALIDATION episode, the default's and support-init's uncalibrated query logits.

The cells of ``studies/safe-gate/study2.py`` (the val features and seeded episodes of
``studies/present-gate``, ``studies/tsallis-calibration``; at most ``--max-episodes`` per cell).
Per episode: the default's query logits with every calibration off (float16), support-init's
``cos / 0.1`` logits, the query labels, the masks of the default's answer (``tsallis``: the
Tsallis head; ``fallback`` and not ``gated``: the guard's support-init answer; ``gated``: the
inductive head the gate answers with; else the first head) and the statistics a rule may read:
shots, ways, ``s`` (mean cosine between the support's class means), ``h`` (the default's mean
largest softmax probability over the queries, uncalibrated) and ``h0`` (support-init's).

    cd studies/safe-gate   # the features: ANYSHOT_STUDY_OUT=/tmp/pc python embed.py omni|mini
    export OMP_NUM_THREADS=1 PYTHONPATH=$PWD/../../src:$PWD ANYSHOT_STUDY_OUT=/tmp/pc
    python ../present-calibration/collect.py --part 0/2 & python ../present-calibration/collect.py --part 1/2
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

torch.set_num_threads(1)

import grid  # noqa: E402  (studies/safe-gate)
from study2 import SEED2, cells  # noqa: E402

from anyshot.methods import presets  # noqa: E402
from anyshot.methods.cosine import class_mean_similarity  # noqa: E402

OUT = os.environ.get("ANYSHOT_STUDY_OUT", "out")
UNCALIBRATED = dataclasses.replace(
    presets.RECOMMENDED, confidence_temperature=1.0, fallback_temperature=1.0,
    fallback_shots_power=0.0, confidence_shots_power=0.0, confidence_similarity_slope=0.0,
    confidence_query_slope=0.0, tsallis_confidence_temperature=None,
    tsallis_confidence_shots_power=0.0,
)
SUPPORT_INIT = dataclasses.replace(
    presets.SUPPORT_INIT, confidence_temperature=1.0, confidence_shots_power=0.0
)


def mask(values: torch.Tensor | None, episodes: int) -> torch.Tensor:
    return torch.zeros(episodes, dtype=torch.bool) if values is None else values


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="0/1", help="i/n: every n-th cell from the i-th")
    ap.add_argument("--max-episodes", type=int, default=150)
    args = ap.parse_args()
    part, parts = (int(x) for x in args.part.split("/"))
    os.makedirs(f"{OUT}/pc", exist_ok=True)
    feats, members = {}, {}
    for i, (ds, name, kind, ways, shots, eps, kw) in enumerate(cells()):
        path = f"{OUT}/pc/{name.replace(' ', '_')}.pt"
        if i % parts != part or os.path.exists(path):
            continue
        if ds not in feats:
            feats[ds], members[ds] = grid.load(ds)
        try:
            s_idx, tgt, q_idx, qt = grid.make_cell(members[ds], kind, ways, shots, eps, SEED2 + i, **kw)
        except ValueError as error:  # e.g. more queries than the classes hold
            print(f"{name:26s} skipped: {error}", flush=True)
            continue
        eps = min(eps, args.max_episodes)
        s_idx, tgt, q_idx, qt = s_idx[:eps], tgt[:eps], q_idx[:eps], qt[:eps]
        t0 = time.perf_counter()
        chunk = max(1, min(64, 20000 // (ways * shots + q_idx.shape[1])))
        support, query = feats[ds][s_idx], feats[ds][q_idx]
        fitted = UNCALIBRATED.fit_features(support, tgt, query, ways=ways, episodes_per_chunk=chunk)
        base = SUPPORT_INIT.fit_features(support, tgt, query, ways=ways)
        logits = fitted.query_logits
        fallback = mask(fitted.fallback, eps)
        gated = mask(fitted.gated, eps)
        store = {
            "domain": ds, "kind": kind, "ways": ways, "shots": shots, "kw": kw,
            "logits": logits.to(torch.float16), "support_init": base.query_logits.to(torch.float16),
            "targets": qt,
            "tsallis": mask(fitted.tsallis, eps) & ~fallback,
            "fallback": fallback, "gated": gated,
            "s": class_mean_similarity(support, torch.as_tensor(tgt), ways),
            "h": logits.double().softmax(-1).amax(-1).mean(1),
            "h0": base.query_logits.double().softmax(-1).amax(-1).mean(1),
        }
        torch.save(store, path + ".tmp")
        os.replace(path + ".tmp", path)
        acc = (logits.argmax(-1) == qt).float().mean()
        print(f"{name:26s} {100 * acc:6.2f} tsallis {store['tsallis'].float().mean():.2f} "
              f"guard {(fallback & ~gated).float().mean():.2f} gated {gated.float().mean():.2f} "
              f"{(time.perf_counter() - t0) / eps * 1000:7.1f} ms/ep", flush=True)


if __name__ == "__main__":
    main()
