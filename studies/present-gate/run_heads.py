"""Heads for the present-class gate study (VALIDATION classes only).

On the 143 cells of ``studies/safe-gate`` (same seeds, same episodes), store each episode's
query logits of: support-init, the default with every safeguard off ("raw": no gate, no guard)
and the default's inductive head (the gate's answer). Every gate / guard rule is then a
per-episode choice among the three, derived without re-training (``derive.py``).

    cd studies/present-gate
    export OMP_NUM_THREADS=1 PYTHONPATH=$PWD/../../src:$PWD/../safe-gate ANYSHOT_STUDY_OUT=out
    (cd ../safe-gate && python embed.py omni && python embed.py mini 200)   # into out/
    python run_heads.py [--cells SUBSTR,...] [--part i/n]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import torch

torch.set_num_threads(1)

import grid  # noqa: E402  (studies/safe-gate)
from study2 import SEED2, cells  # noqa: E402

from anyshot.methods import presets  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../benchmarks"))
from peers import alpha_tim  # noqa: E402

#: Peers of benchmarks/peers.py run on the same episodes (raw feature rows -> query logits).
PEERS = {"alpha-tim": alpha_tim}

OUT = os.environ.get("ANYSHOT_STUDY_OUT", "out")
RAW = dataclasses.replace(
    presets.RECOMMENDED, min_queries_per_class=0.0, queries_per_shot=0.0, min_agreement=0.0
)
HEADS = {
    "support-init": presets.SUPPORT_INIT,
    "raw": RAW,
    "inductive": presets.RECOMMENDED_INDUCTIVE,
    "default": presets.RECOMMENDED,  # as the product has it when this runs
}


def method(head: str):
    """``name`` of HEADS, or ``name:field=value,...`` (floats) for a variant of it."""
    name, _, changes = head.partition(":")
    fields = dict(c.split("=") for c in changes.split(",") if c)
    return dataclasses.replace(HEADS[name], **{k: type(getattr(HEADS[name], k))(float(v)) for k, v in fields.items()})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", default="")
    ap.add_argument("--part", default="0/1", help="i/n: every n-th cell from the i-th")
    ap.add_argument("--heads", default=";".join(HEADS), help="; between heads")
    args = ap.parse_args()
    part, parts = (int(x) for x in args.part.split("/"))
    os.makedirs(f"{OUT}/pg", exist_ok=True)
    feats, members = {}, {}
    for i, (ds, name, kind, ways, shots, eps, kw) in enumerate(cells()):
        if i % parts != part or (args.cells and not any(f in name for f in args.cells.split(","))):
            continue
        if ds not in feats:
            feats[ds], members[ds] = grid.load(ds)
        path = f"{OUT}/pg/{name.replace(' ', '_')}.pt"
        store = torch.load(path) if os.path.exists(path) else {}
        s_idx, tgt, q_idx, qt = grid.make_cell(members[ds], kind, ways, shots, eps, SEED2 + i, **kw)
        store["targets"] = qt
        for head in args.heads.split(";"):
            if head in store:
                continue
            t0 = time.perf_counter()
            chunk = max(1, min(64, 20000 // (ways * shots + q_idx.shape[1])))
            if head in PEERS:
                logits = torch.cat([
                    PEERS[head](feats[ds][s_idx[a:a + chunk]], tgt[a:a + chunk],
                                feats[ds][q_idx[a:a + chunk]], ways)
                    for a in range(0, eps, chunk)
                ])
            else:
                logits = method(head).fit_features(
                    feats[ds][s_idx], tgt, feats[ds][q_idx], ways=ways, episodes_per_chunk=chunk
                ).query_logits
            store[head] = logits.to(torch.float16)
            acc = (logits.argmax(-1) == qt).float().mean()
            ms = (time.perf_counter() - t0) / eps * 1000
            print(f"{name:26s} {head:13s} {100 * acc:6.2f}  {ms:7.1f} ms/ep", flush=True)
            torch.save(store, path + ".tmp")
            os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
