"""Per cell: support-init, the default (derived as in present-gate/derive.py) and the default
with each variant head as its raw head, plus alpha-TIM where stored (VALIDATION classes only).

    cd studies/present-gate && PYTHONPATH=$PWD/../../src python ../alpha-head/compare.py HEAD ...
"""
from __future__ import annotations

import sys

import torch

from derive import acc, load_cells, rule


def main() -> None:
    variants = sys.argv[1:]
    base = {c["name"]: c for c in load_cells()}
    rows = {v: {c["name"]: c for c in load_cells(v)} for v in variants}
    peers = {}
    for name in base:
        store = torch.load(f"out/pg/{name.replace(' ', '_')}.pt")
        if "alpha-tim" in store:
            peers[name] = store["alpha-tim"].float().argmax(-1)
    print(f"{'cell':26s}  si     default " + " ".join(f"{v[-14:]:>14s}" for v in variants) + "  alpha-tim")
    gains = {v: [] for v in variants}
    for name, cell in base.items():
        if not all(name in rows[v] for v in variants):
            continue
        y = cell["y"]
        si, ci = acc(cell["support-init"], y)
        default = acc(rule(cell, "raw", 6, 0.5, "si>si"), y)[0]
        line = f"{name:26s} {si:5.1f}  {default:5.1f}  "
        for v in variants:
            a = acc(rule(rows[v][name], "raw", 6, 0.5, "si>si"), y)[0]
            gains[v].append((a - default, a < si - ci, "pres" in name))
            line += f" {a:5.1f} ({a - default:+5.1f})"
        if name in peers:
            line += f"  {acc(peers[name], y)[0]:5.1f}"
        print(line)
    for v, g in gains.items():
        pres = [d for d, _, p in g if p]
        other = [d for d, _, p in g if not p]
        print(f"{v}: cells {len(g)}, mean gain {sum(d for d, _, _ in g) / max(len(g), 1):+.2f}, "
              f"present {sum(pres) / max(len(pres), 1):+.2f} ({len(pres)}), "
              f"other {sum(other) / max(len(other), 1):+.2f}, below SI-CI {sum(b for _, b, _ in g)}")


if __name__ == "__main__":
    main()
