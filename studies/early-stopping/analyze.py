"""Rules on the curves of ``probe.py``: what early stopping on held-out labelled images would
have given, beside the product's fixed 25 epochs on every labelled image.

    python studies/early-stopping/analyze.py studies/early-stopping/results/*.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np


def first_best(held: list[float], upto: int) -> int:
    return int(np.argmax(held[: upto + 1]))


def last_best(held: list[float], upto: int) -> int:
    best = max(held[: upto + 1])
    return max(e for e in range(upto + 1) if held[e] == best)


def patience_stop(held: list[float], patience: int) -> tuple[int, int]:
    """(epoch kept, epochs trained): stop after ``patience`` epochs without a new best."""
    best, best_epoch = -1.0, 0
    for epoch, value in enumerate(held):
        if value > best:
            best, best_epoch = value, epoch
        elif epoch - best_epoch >= patience:
            return best_epoch, epoch
    return best_epoch, len(held) - 1


def rows(record: dict) -> dict[str, tuple[float, int]]:
    """rule -> (query accuracy %, epochs trained)."""
    held = [h for h, _ in record["curve"]]
    query = [q for _, q in record["curve"]]
    last = len(held) - 1
    out = {"full, 25 epochs": (100 * record["acc_full"], 25)}
    for epochs in (10, 15, 25, last):
        out[f"80%, {epochs} epochs"] = (100 * query[epochs], epochs)
    out[f"80%, first best of {last}"] = (100 * query[first_best(held, last)], last)
    out[f"80%, last best of {last}"] = (100 * query[last_best(held, last)], last)
    out["80%, last best of 25"] = (100 * query[last_best(held, 25)], 25)
    for patience in (5, 10):
        kept, trained = patience_stop(held, patience)
        out[f"80%, patience {patience}"] = (100 * query[kept], trained)
    out["80%, oracle epoch"] = (100 * max(query), last)
    return out


def main() -> None:
    by_cell: dict[str, list[dict[str, tuple[float, int]]]] = defaultdict(list)
    for path in sys.argv[1:]:
        for line in open(path):
            record = json.loads(line)
            by_cell[record["cell"]].append(rows(record))
    for cell, episodes in sorted(by_cell.items()):
        print(f"\n{cell} ({len(episodes)} episodes): query accuracy %, mean epochs trained")
        full = np.array([e["full, 25 epochs"][0] for e in episodes])
        for rule in episodes[0]:
            acc = np.array([e[rule][0] for e in episodes])
            epochs = np.mean([e[rule][1] for e in episodes])
            diff = acc - full
            half = 1.96 * diff.std(ddof=1) / len(diff) ** 0.5 if len(diff) > 1 else float("nan")
            print(f"  {rule:26s} {acc.mean():5.1f}  vs full {diff.mean():+5.1f} ± {half:4.1f}"
                  f"  epochs {epochs:4.1f}")


if __name__ == "__main__":
    main()
