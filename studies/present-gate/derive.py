"""Gate / guard rules of the default, derived from run_heads.py's stored predictions.

Each rule chooses per episode among the raw head (query terms, no safeguard), the inductive head
and support-init. Printed per rule: cells below support-init minus its 95% CI half-width, mean
gain over support-init (all cells; present-class cells), worst cell.

    cd studies/present-gate && PYTHONPATH=$PWD/../../src python derive.py [--detail RULE]
"""
from __future__ import annotations

import argparse
import glob
import os
import re

import torch
import torch.nn.functional as F

OUT = os.environ.get("ANYSHOT_STUDY_OUT", "out")


def acc(pred: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    a = (pred == y).float().mean(1)
    return 100 * float(a.mean()), 196 * float(a.std()) / len(a) ** 0.5


def perplexity(pred: torch.Tensor, ways: int) -> torch.Tensor:
    """[E, Q] predicted classes -> [E] exp(entropy of the predicted class frequencies)."""
    counts = F.one_hot(pred, ways).sum(1).float()
    freq = counts / counts.sum(1, keepdim=True)
    return torch.exp(-(freq * freq.clamp_min(1e-12).log()).sum(1))


def load_cells(raw: str = "raw") -> list[dict]:
    """Every cell with support-init, ``raw`` (stored as "raw") and the inductive head."""
    cells = []
    for path in sorted(glob.glob(f"{OUT}/pg/*.pt")):
        store = torch.load(path)
        if not all(h in store for h in ("support-init", raw, "inductive")):
            continue
        store["raw"] = store[raw]
        name = os.path.basename(path)[:-3].replace("_", " ")
        shots = int(re.search(r"w(\d+)s", name).group(1))
        preds = {h: store[h].float().argmax(-1) for h in ("support-init", "raw", "inductive")}
        cells.append(dict(name=name, shots=shots, y=store["targets"], ways=store["raw"].shape[-1], **preds))
    return cells


def rule(cell: dict, count: str, m: float, s: float, guard: str, agree_min: float = 0.5) -> torch.Tensor:
    """Per-episode predictions [E, Q] of one rule. ``count`` "frac-X": K_hat counted as X, and
    the per-shot term scaled by the share K_hat / K of the support classes the queries hold."""
    si, raw, ind = cell["support-init"], cell["raw"], cell["inductive"]
    queries, ways, shots = si.shape[1], cell["ways"], cell["shots"]
    k_si, k_raw = perplexity(si, ways), perplexity(raw, ways)
    share = count.startswith("frac-")
    count = count.removeprefix("frac-")
    k = {"si": k_si, "raw": k_raw, "min": torch.minimum(k_si, k_raw),
         "geo": (k_si * k_raw).sqrt()}[count]
    per_shot = s * shots * (k / ways if share else 1.0)
    gate = (queries < (m + per_shot) * k) | (queries <= 1)
    reference = {"si": si, "ind": ind, "none": raw}[guard.split(">")[0]]
    fallback = {"si": si, "ind": ind}[guard.split(">")[1]] if ">" in guard else si
    agree = (raw == reference).float().mean(1)
    guarded = agree < agree_min
    answer = torch.where(guarded.unsqueeze(1), fallback, raw)
    return torch.where(gate.unsqueeze(1), ind, answer)


RULES = {
    "current": ("si", 6, 0.5, "si>si"),
    **{f"{c}-m{m}-s{s}-{g}": (c, m, s, g)
       for c in ("si", "raw", "min", "geo", "frac-raw", "frac-si")
       for m in (4, 6, 8)
       for s in (0.25, 0.5, 1.0, 2.0)
       for g in ("si>si", "si>ind", "ind>ind")},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--detail", default="")
    ap.add_argument("--raw", default="raw", help="the stored head the rules train with the queries")
    ap.add_argument("--rules", default="", help="substrings: only the rules that contain one")
    args = ap.parse_args()
    cells = load_cells(args.raw)
    base = {c["name"]: acc(c["support-init"], c["y"]) for c in cells}
    print(len(cells), "cells")
    table = []
    for name, (count, m, s, g) in RULES.items():
        if args.rules and not any(r in name for r in args.rules.split(",")):
            continue
        below, gains, present, standard, worst = 0, [], [], [], (99.0, "")
        for c in cells:
            mean, _ = acc(rule(c, count, m, s, g), c["y"])
            m0, ci0 = base[c["name"]]
            below += mean < m0 - ci0
            gains.append(mean - m0)
            if "pres" in c["name"]:
                present.append(mean - m0)
            if "bal" in c["name"] or "dir" in c["name"]:
                standard.append(mean - m0)
            worst = min(worst, ((mean - m0) / max(ci0, 1e-9), c["name"]))
        mean_of = lambda xs: sum(xs) / max(1, len(xs))  # noqa: E731
        table.append((name, below, mean_of(gains), mean_of(present), mean_of(standard), worst))
    for name, below, gain, pres, std, worst in sorted(table, key=lambda r: (r[1], -r[2])):
        print(f"{name:28s} below {below:3d}  gain {gain:5.2f}  present {pres:5.2f}  "
              f"balanced/Dirichlet {std:5.2f}  worst {worst[0]:5.2f} ({worst[1]})")
    for name in filter(None, args.detail.split(",")):
        count, m, s, g = RULES[name]
        print("\n", name)
        for c in cells:
            m0, ci0 = base[c["name"]]
            print(f"  {c['name']:28s} si {m0:5.1f}±{ci0:3.1f} raw {acc(c['raw'], c['y'])[0]:5.1f} "
                  f"ind {acc(c['inductive'], c['y'])[0]:5.1f} rule {acc(rule(c, count, m, s, g), c['y'])[0]:5.1f}")


if __name__ == "__main__":
    main()
