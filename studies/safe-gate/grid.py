"""The val grid: seeded episodes on cached VALIDATION features (feats_{omni,mini}.pt from embed.py).

Each cell is a list of fixed-shape episodes stored as index tensors into the feature matrix:
support [E, K*shots] (way-major), targets [E, K*shots], query [E, Q], query targets [E, Q].
"""
from __future__ import annotations

import numpy as np
import torch

from anyshot.protocols import apportion, capped
import os as _os
OUT = _os.environ.get("ANYSHOT_STUDY_OUT", "out")  # where features and predictions go

SEED = 12345


def load(which: str):
    blob = torch.load(f"{OUT}/feats_{which}.pt")
    feats = blob["features"].reshape(len(blob["items"]), -1).float()
    labels = blob["labels"].numpy()
    members = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    return feats, members


def make_cell(members, kind: str, ways: int, shots: int, episodes: int, seed: int, **kw):
    """kind: 'present' (kw: k_eff, total), 'dirichlet' (kw: alpha, total), 'balanced'
    (kw: per_class), 'tiny' (kw: total; query classes uniform with replacement)."""
    classes_all = np.array(sorted(members))
    sup, tgt, qry, qt = [], [], [], []
    for e in range(episodes):
        rng = np.random.Generator(np.random.PCG64([seed, e]))
        chosen = rng.choice(classes_all, size=ways, replace=False)
        perms = [rng.permutation(members[int(c)]) for c in chosen]
        capacity = np.array([len(p) - shots for p in perms])
        if kind == "present":
            present = rng.choice(ways, size=kw["k_eff"], replace=False)
            w = np.zeros(ways)
            w[present] = 1.0
            counts = capped(apportion(kw["total"], w), capacity, w)
        elif kind == "dirichlet":
            p = rng.dirichlet(np.full(ways, kw["alpha"]))
            counts = capped(apportion(kw["total"], p), capacity, p)
        elif kind == "balanced":
            counts = np.full(ways, kw["per_class"])
        elif kind == "tiny":
            counts = np.bincount(rng.integers(0, ways, size=kw["total"]), minlength=ways)
            counts = capped(counts, capacity, np.ones(ways))
        else:
            raise ValueError(kind)
        assert (counts <= capacity).all()
        s, t, q, y = [], [], [], []
        for k, p in enumerate(perms):
            s += list(p[:shots])
            t += [k] * shots
            q += list(p[shots : shots + counts[k]])
            y += [k] * int(counts[k])
        sup.append(s)
        tgt.append(t)
        qry.append(q)
        qt.append(y)
    return (
        torch.tensor(np.array(sup)),
        torch.tensor(np.array(tgt)),
        torch.tensor(np.array(qry)),
        torch.tensor(np.array(qt)),
    )


def cells(quick: bool = False):
    """(dataset, name, kind, ways, shots, episodes, kw, standard?) of every cell of the grid."""
    n = (lambda x: max(10, x // 5)) if quick else (lambda x: x)
    out = []
    # standard / imbalanced 5-way
    for ds in ("mini", "omni"):
        for shots in (1, 5):
            std = ds == "mini"
            out.append((ds, f"{ds} 5w{shots}s bal", "balanced", 5, shots, n(200), dict(per_class=15), std))
            out.append((ds, f"{ds} 5w{shots}s dir2", "dirichlet", 5, shots, n(200), dict(alpha=2.0, total=75), std))
            out.append((ds, f"{ds} 5w{shots}s dir0.5", "dirichlet", 5, shots, n(200), dict(alpha=0.5, total=75), False))
    # present classes
    for shots in (1, 5):
        for k_eff in (1, 3, 5):
            out.append(("mini", f"mini 16w{shots}s pres{k_eff}", "present", 16, shots, n(150), dict(k_eff=k_eff, total=75), False))
    for ways in (20, 100):
        for shots in (1, 5):
            for k_eff in (1, 3, 5):
                out.append(("omni", f"omni {ways}w{shots}s pres{k_eff}", "present", ways, shots, n(120 if ways == 20 else 40), dict(k_eff=k_eff, total=15 * k_eff), False))
    # many ways, balanced
    for shots in (1, 5):
        out.append(("mini", f"mini 16w{shots}s bal5", "balanced", 16, shots, n(150), dict(per_class=5), False))
        for ways, eps in ((20, 150), (50, 50), (160, 20)):
            out.append(("omni", f"omni {ways}w{shots}s bal5", "balanced", ways, shots, n(eps), dict(per_class=5), False))
    # tiny query sets
    for ds in ("mini", "omni"):
        for ways in (5, 16 if ds == "mini" else 20):
            for shots in (1, 5):
                for q in (1, 5):
                    out.append((ds, f"{ds} {ways}w{shots}s q{q}", "tiny", ways, shots, n(200), dict(total=q), False))
    # 20-shot (mini only: Omniglot classes have 20 images); appended last to keep earlier seeds
    out.append(("mini", "mini 5w20s bal", "balanced", 5, 20, n(100), dict(per_class=15), False))
    out.append(("mini", "mini 5w20s dir0.5", "dirichlet", 5, 20, n(100), dict(alpha=0.5, total=75), False))
    out.append(("mini", "mini 16w20s pres1", "present", 16, 20, n(100), dict(k_eff=1, total=75), False))
    out.append(("mini", "mini 16w20s pres5", "present", 16, 20, n(100), dict(k_eff=5, total=75), False))
    out.append(("mini", "mini 16w20s q5", "tiny", 16, 20, n(100), dict(total=5), False))
    return out


def build_all(quick: bool = False, filt: str = ""):
    feats = {}
    members = {}
    result = []
    for i, (ds, name, kind, ways, shots, eps, kw, std) in enumerate(cells(quick)):
        if not any(f in name for f in filt.split(",")):
            continue
        if ds not in feats:
            feats[ds], members[ds] = load(ds)
        idx = make_cell(members[ds], kind, ways, shots, eps, SEED + i, **kw)
        result.append(dict(ds=ds, name=name, kind=kind, ways=ways, shots=shots, standard=std, idx=idx))
    return feats, result
