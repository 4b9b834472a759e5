"""Pool study.py's val runs and choose the trained network's confidence temperature (issue 17).

Each ``FILE:T`` is a study.py JSON whose probabilities were recorded with the network's logits
already divided by ``T`` (1 before ``NETWORK.confidence_temperature`` existed, 1.35 after): their
logarithms times ``T`` are the trained logits up to a constant per image. Per cell and pooled:
the NLL-optimal ``t``; and the best rule ``t = c * shots ** b`` (grid). Then, once, the test
file's ECE at the chosen constant and at the rule.

    PYTHONPATH=src:studies/network-calibration python studies/network-calibration/pool.py \
        --val studies/network-calibration/val-seed0.json:1.35 studies/network-calibration/val-seed1.json:1.35 \
        --test studies/network-calibration/test.json:1
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from study import CELLS, best_temperature, ece, nll


def load(entries: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Cell -> (trained log-probabilities [N, K], truth [N]) over the files."""
    cells: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {c: ([], []) for c in CELLS}
    for entry in entries:
        path, recorded = entry.rsplit(":", 1)
        record = json.load(open(path))
        for cell, row in record["cells"].items():
            cells[cell][0].append(float(recorded) * np.asarray(row["log_probabilities"]))
            cells[cell][1].append(np.asarray(row["truth"]))
    return {c: (np.concatenate(lp), np.concatenate(tr)) for c, (lp, tr) in cells.items()}


def rule_nll(data: dict[str, tuple[np.ndarray, np.ndarray]], c: float, b: float) -> float:
    """Mean NLL over the cells (each weighted equally) with ``t = c * shots ** b``."""
    return float(np.mean([nll(lp, tr, c * CELLS[cell][1] ** b) for cell, (lp, tr) in data.items()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--val", nargs="+", required=True)
    parser.add_argument("--test")
    args = parser.parse_args()
    val = load(args.val)
    for cell, (lp, tr) in val.items():
        t = best_temperature(lp, tr)
        print(f"val {cell}: n {len(tr)} acc {100 * (lp.argmax(1) == tr).mean():.1f} best t {t:.2f} "
              f"ECE as trained {ece(lp, tr, 1):.1f}, at 1.35 {ece(lp, tr, 1.35):.1f}, at best {ece(lp, tr, t):.1f}")
    pooled = best_temperature(np.concatenate([v[0] for v in val.values()]),
                              np.concatenate([v[1] for v in val.values()]))
    grid = [(c, b) for c in np.arange(1.0, 2.01, 0.01) for b in np.arange(-0.1, 0.31, 0.01)]
    c, b = min(grid, key=lambda cb: rule_nll(val, *cb))
    print(f"val pooled constant t {pooled:.2f}; rule t = {c:.2f} * shots ** {b:.2f}")
    for cell, (lp, tr) in val.items():
        print(f"  val {cell}: ECE at {pooled:.2f} {ece(lp, tr, pooled):.1f}, "
              f"at the rule ({c * CELLS[cell][1] ** b:.2f}) {ece(lp, tr, c * CELLS[cell][1] ** b):.1f}")
    if args.test:
        for cell, (lp, tr) in load([args.test]).items():
            rule = c * CELLS[cell][1] ** b
            print(f"test {cell}: ECE at 1.35 {ece(lp, tr, 1.35):.1f}, at {pooled:.2f} "
                  f"{ece(lp, tr, pooled):.1f}, at the rule ({rule:.2f}) {ece(lp, tr, rule):.1f}; "
                  f"NLL {nll(lp, tr, 1.35):.3f} / {nll(lp, tr, pooled):.3f} / {nll(lp, tr, rule):.3f}")


if __name__ == "__main__":
    main()
