"""Per-episode centre selection + gate/guard, derived from s2 (support-init, raw, unguarded) and
s2b (raw-ep, raw-sup) stores. VALIDATION classes only.

    cd /work/study && PYTHONPATH=/work/main/src /work/main/.venv/bin/python derive3.py
"""
from __future__ import annotations

import glob
import os
import sys

import torch
import torch.nn.functional as F

from anyshot.methods.balance import dirichlet_concentration
import os as _os
OUT = _os.environ.get("ANYSHOT_STUDY_OUT", "out")  # where features and predictions go


def acc(pred, y):
    a = (pred == y).float().mean(1)
    return 100 * float(a.mean()), 196 * float(a.std()) / len(a) ** 0.5


def load(name):
    store = torch.load(f"{OUT}/s2/{name}.pt")
    extra = f"{OUT}/s2b/{name}.pt"
    if os.path.exists(extra):
        for k, v in torch.load(extra).items():
            if k != "targets":
                store[k] = v
    return store


def choose(store, a0, high="raw-ep", low="raw", gate=2.0, khat="distinct", guard=0.5, floor=2):
    si = store["support-init"].float()
    E, Q, K = si.shape
    p_si = si.argmax(-1)
    counts = F.one_hot(p_si, K).sum(1)
    a = dirichlet_concentration(counts)
    if a0 != float("inf") and high not in store:
        return None
    if a0 == float("inf"):
        p = store[low].float().argmax(-1)
    else:
        p = torch.where((a >= a0).unsqueeze(1), store[high].float().argmax(-1), store[low].float().argmax(-1))
    kk = torch.tensor([float(len(torch.unique(r))) for r in p_si]) if khat == "distinct" else torch.full((E,), float(K))
    gated = (Q < gate * kk) | (Q < floor)
    agree = (p == p_si).float().mean(1)
    fb = gated | (agree < guard)
    return torch.where(fb.unsqueeze(1), p_si, p)


VARIANTS = {
    "K2-f12": dict(a0=float("inf"), khat="K", floor=12),
    "K2-f16": dict(a0=float("inf"), khat="K", floor=16),
    "K2-f20": dict(a0=float("inf"), khat="K", floor=20),
    "d2-f16": dict(a0=float("inf"), floor=16),
    "d2-f20": dict(a0=float("inf"), floor=20),
    "d3-f16": dict(a0=float("inf"), gate=3.0, floor=16),
    "d3-f20": dict(a0=float("inf"), gate=3.0, floor=20),
    "d4-f20": dict(a0=float("inf"), gate=4.0, floor=20),
    "current": dict(a0=float("inf"), khat="K"),
    "cur-dist": dict(a0=float("inf")),
    "ep1-dist": dict(a0=1.0),
    "ep3-dist": dict(a0=3.0),
    "ep10-dist": dict(a0=10.0),
    "ug1-dist": dict(a0=1.0, high="unguarded"),
    "ug3-dist": dict(a0=3.0, high="unguarded"),
    "ep3-dist-g0.3": dict(a0=3.0, guard=0.3),
}


def main():
    names = sys.argv[1:] or list(VARIANTS)
    print("| cell | SI | unguarded | raw | raw-ep | " + " | ".join(names) + " |")
    print("|---" * (5 + len(names)) + "|")
    for path in sorted(glob.glob(f"{OUT}/s2/*.pt")):
        name = os.path.basename(path)[:-3]
        store = load(name)
        if not all(h in store for h in ("support-init", "raw", "unguarded")):
            continue
        y = store["targets"]
        m0, ci0 = acc(store["support-init"].float().argmax(-1), y)
        cols = [f"{m0:.1f}±{ci0:.1f}"]
        for h in ("unguarded", "raw", "raw-ep"):
            cols.append(f"{acc(store[h].float().argmax(-1), y)[0]:.1f}" if h in store else "-")
        for n in names:
            p = choose(store, **VARIANTS[n])
            if p is None:
                cols.append("-")
                continue
            m, _ = acc(p, y)
            cols.append(f"{m:.1f}{'✗' if m < m0 - ci0 else ''}")
        print(f"| {name.replace('_', ' ')} | " + " | ".join(cols) + " |")


if __name__ == "__main__":
    main()
