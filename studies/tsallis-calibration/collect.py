"""Collect, per val episode, the default's uncalibrated query logits and which head answered.

On the cells of ``studies/safe-gate/study2.py`` (VALIDATION classes; the same seeds and episodes
as ``studies/present-gate`` and ``studies/alpha-head``), the default with every calibration off
(``confidence_temperature = fallback_temperature = 1``, no rule). Per episode: query logits
(float16), query labels, the masks ``tsallis`` (answered by the Tsallis head), ``fallback`` and
``gated``, and the statistics the product's rule reads: shots, ``s`` (support class means' mean
cosine) and ``h`` (the head's mean largest softmax probability over queries).

    cd studies/present-gate
    export OMP_NUM_THREADS=1 PYTHONPATH=$PWD/../../src:$PWD/../safe-gate:$PWD/../../benchmarks:$PWD
    python ../tsallis-calibration/collect.py --part 0/2 & python ../tsallis-calibration/collect.py --part 1/2
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
    confidence_shots_power=0.0, confidence_similarity_slope=0.0, confidence_query_slope=0.0,
    tsallis_confidence_temperature=None, tsallis_confidence_shots_power=0.0,
)


def mask(values: torch.Tensor | None, episodes: int) -> torch.Tensor:
    return torch.zeros(episodes, dtype=torch.bool) if values is None else values


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="0/1", help="i/n: every n-th cell from the i-th")
    args = ap.parse_args()
    part, parts = (int(x) for x in args.part.split("/"))
    os.makedirs(f"{OUT}/tc", exist_ok=True)
    feats, members = {}, {}
    for i, (ds, name, kind, ways, shots, eps, kw) in enumerate(cells()):
        path = f"{OUT}/tc/{name.replace(' ', '_')}.pt"
        if i % parts != part or os.path.exists(path):
            continue
        if ds not in feats:
            feats[ds], members[ds] = grid.load(ds)
        try:
            s_idx, tgt, q_idx, qt = grid.make_cell(members[ds], kind, ways, shots, eps, SEED2 + i, **kw)
        except ValueError as error:  # e.g. more queries than the classes hold
            print(f"{name:26s} skipped: {error}", flush=True)
            continue
        t0 = time.perf_counter()
        chunk = max(1, min(64, 20000 // (ways * shots + q_idx.shape[1])))
        support = feats[ds][s_idx]
        fitted = UNCALIBRATED.fit_features(
            support, tgt, feats[ds][q_idx], ways=ways, episodes_per_chunk=chunk
        )
        logits = fitted.query_logits
        fallback = mask(fitted.fallback, eps)
        store = {
            "domain": ds, "kind": kind, "ways": ways, "shots": shots, "kw": kw,
            "logits": logits.to(torch.float16), "targets": qt,
            "tsallis": mask(fitted.tsallis, eps) & ~fallback,
            "fallback": fallback, "gated": mask(fitted.gated, eps),
            "s": class_mean_similarity(support, torch.as_tensor(tgt), ways),
            "h": logits.double().softmax(-1).amax(-1).mean(1),
        }
        torch.save(store, path + ".tmp")
        os.replace(path + ".tmp", path)
        acc = (logits.argmax(-1) == qt).float().mean()
        print(f"{name:26s} {100 * acc:6.2f} tsallis {store['tsallis'].float().mean():.2f} "
              f"{(time.perf_counter() - t0) / eps * 1000:7.1f} ms/ep", flush=True)


if __name__ == "__main__":
    main()
