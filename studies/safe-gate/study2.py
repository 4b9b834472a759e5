"""Study 2 (VALIDATION classes only): gate/guard variants of the default, derived post hoc.

Runs three heads with anyshot's own code on each cell -- support-init, RECOMMENDED with both
safeguards off ("raw"), and UNGUARDED -- and stores per-episode query predictions; every gate /
guard rule is a per-episode choice between raw and support-init, so derive2.py computes them
without re-training.

    cd /work/study && OMP_NUM_THREADS=1 PYTHONPATH=/work/main/src \
        /work/main/.venv/bin/python study2.py [--cells SUBSTR,...]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

torch.set_num_threads(1)

import grid  # noqa: E402
from anyshot.methods import presets  # noqa: E402

SEED2 = 777
import sys
sys.path.insert(0, "../../benchmarks")
from peers import alpha_tim, paddle  # noqa: E402
import os as _os
OUT = _os.environ.get("ANYSHOT_STUDY_OUT", "out")  # where features and predictions go
PEERS = {"alpha-tim": alpha_tim, "paddle": paddle}


def cells():
    out = []
    out.append(("mini", "mini 5w1s bal", "balanced", 5, 1, 1000, dict(per_class=15)))
    out.append(("mini", "mini 5w1s dir2", "dirichlet", 5, 1, 1000, dict(alpha=2.0, total=75)))
    out.append(("mini", "mini 5w5s bal", "balanced", 5, 5, 500, dict(per_class=15)))
    out.append(("mini", "mini 5w5s dir2", "dirichlet", 5, 5, 500, dict(alpha=2.0, total=75)))
    out.append(("mini", "mini 5w1s dir0.5", "dirichlet", 5, 1, 300, dict(alpha=0.5, total=75)))
    for shots in (1, 5):
        for k in (1, 3, 5):
            out.append(("mini", f"mini 16w{shots}s pres{k}", "present", 16, shots, 150, dict(k_eff=k, total=75)))
    for ways, eps in ((20, 100), (50, 50), (100, 40)):
        for shots in (1, 5):
            for k in (1, 3, 5):
                out.append(("omni", f"omni {ways}w{shots}s pres{k} q75", "present", ways, shots, eps, dict(k_eff=k, total=75)))
    for ds, ways in (("mini", 5), ("mini", 16), ("omni", 5), ("omni", 20)):
        for shots in (1, 5):
            for q in (2, 5, 10):
                out.append((ds, f"{ds} {ways}w{shots}s q{q}", "tiny", ways, shots, 200, dict(total=q)))
    out.append(("omni", "omni 5w1s dir0.5", "dirichlet", 5, 1, 300, dict(alpha=0.5, total=75)))
    out.append(("omni", "omni 5w1s bal", "balanced", 5, 1, 300, dict(per_class=15)))
    for ways, eps in ((20, 100), (50, 40)):
        out.append(("omni", f"omni {ways}w1s bal5", "balanced", ways, 1, eps, dict(per_class=5)))
        out.append(("omni", f"omni {ways}w5s bal5", "balanced", ways, 5, eps, dict(per_class=5)))
    # appended later (keeps earlier seeds): query sets between tiny and standard
    for ds, ways in (("mini", 5), ("mini", 16), ("omni", 5), ("omni", 20)):
        for shots in (1, 5):
            for q in (15, 20, 30):
                out.append((ds, f"{ds} {ways}w{shots}s q{q}", "tiny", ways, shots, 200, dict(total=q)))
    for ds, ways in (("mini", 5), ("mini", 16), ("omni", 5), ("omni", 20)):
        for shots in (1, 5):
            for q in (40, 50, 60):
                out.append((ds, f"{ds} {ways}w{shots}s q{q}", "tiny", ways, shots, 150, dict(total=q)))
    for ds, ways in (("mini", 16), ("omni", 20)):
        for shots in (1, 5):
            out.append((ds, f"{ds} {ways}w{shots}s pres3 q30", "present", ways, shots, 150, dict(k_eff=3, total=30)))
            out.append((ds, f"{ds} {ways}w{shots}s pres1 q15", "present", ways, shots, 150, dict(k_eff=1, total=15)))
            out.append((ds, f"{ds} {ways}w{shots}s pres5 q45", "present", ways, shots, 150, dict(k_eff=5, total=45)))
    for ds, ways in (("mini", 16), ("omni", 20), ("mini", 5), ("omni", 5)):
        for shots in (1, 5):
            for q in (75, 100):
                out.append((ds, f"{ds} {ways}w{shots}s q{q}", "tiny", ways, shots, 150, dict(total=q)))
    out.append(("mini", "mini 5w20s bal", "balanced", 5, 20, 100, dict(per_class=15)))
    out.append(("mini", "mini 5w20s dir2", "dirichlet", 5, 20, 100, dict(alpha=2.0, total=75)))
    for q in (30, 50, 75):
        out.append(("mini", f"mini 5w20s q{q}", "tiny", 5, 20, 100, dict(total=q)))
    for k in (1, 3, 5):
        out.append(("mini", f"mini 16w20s pres{k}", "present", 16, 20, 100, dict(k_eff=k, total=75)))
    out.append(("mini", "mini 16w20s q75", "tiny", 16, 20, 100, dict(total=75)))
    out.append(("mini", "mini 5w10s q50", "tiny", 5, 10, 100, dict(total=50)))
    out.append(("mini", "mini 5w10s bal", "balanced", 5, 10, 100, dict(per_class=15)))
    return out


RAW = dataclasses.replace(presets.RECOMMENDED, min_queries_per_class=0.0, min_agreement=0.0)
HEADS = {
    "support-init": presets.SUPPORT_INIT,
    "raw": RAW,
    "unguarded": presets.UNGUARDED,
    "raw-ep": dataclasses.replace(RAW, center_on="episode"),
    "raw-ml": dataclasses.replace(RAW, empirical_bayes=False),
    "raw-sup": dataclasses.replace(RAW, center_on="support"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", default="")
    ap.add_argument("--dir", default="s2")
    ap.add_argument("--heads", default="support-init,raw,unguarded")
    args = ap.parse_args()
    feats, members = {}, {}
    for i, (ds, name, kind, ways, shots, eps, kw) in enumerate(cells()):
        if args.cells and not any(f in name for f in args.cells.split(",")):
            continue
        if ds not in feats:
            feats[ds], members[ds] = grid.load(ds)
        path = f"{OUT}/{args.dir}/{name.replace(' ', '_')}.pt"
        store = torch.load(path) if os.path.exists(path) else {}
        s_idx, tgt, q_idx, qt = grid.make_cell(members[ds], kind, ways, shots, eps, SEED2 + i, **kw)
        store["targets"] = qt
        for head in args.heads.split(","):
            if head in store:
                continue
            t0 = time.perf_counter()
            chunk = max(1, min(64, 20000 // (ways * shots + q_idx.shape[1])))
            if head in PEERS:
                logits = torch.cat([PEERS[head](feats[ds][s_idx[a:a + chunk]], tgt[a:a + chunk], feats[ds][q_idx[a:a + chunk]], ways)
                                    for a in range(0, eps, chunk)])
            else:
                logits = HEADS[head].fit_features(feats[ds][s_idx], tgt, feats[ds][q_idx], ways=ways, episodes_per_chunk=chunk).query_logits
            store[head] = logits.to(torch.float16)
            acc = (logits.argmax(-1) == qt).float().mean()
            print(f"{name:26s} {head:13s} {100*acc:6.2f}  {(time.perf_counter()-t0)/eps*1000:7.1f} ms/ep", flush=True)
            torch.save(store, path + ".tmp")
            os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
