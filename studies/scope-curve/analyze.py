"""Tables of the scope-curve study from ``results/*.jsonl`` (see README.md).

    python studies/scope-curve/analyze.py > studies/scope-curve/tables.md
    python studies/scope-curve/analyze.py --bundle benchmarks/results/any-shot-curve-check.json

Per cell: episodes, the mean accuracy of every row (percent; ``± t * sd / sqrt(n)``, the 95%
interval of the mean with Student's t), the mean cross-class similarity ``cross_cos``, and the
paired difference of scope ``all`` to the better of the logistic regression and the inductive
head (per episode), and to the full fine-tuning anchor, of ``all`` (scope ``all`` as the
product runs it: the stored batch-norm statistics) and of ``all-auto`` (``all`` below 5
labelled images per class, ``all-episode`` from 5: a rule tried, not shipped).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
#: ``all-auto``: ``all-episode`` from this many shots, ``all`` below (a rule tried, not shipped:
#: with the paper's settings episode statistics lost 23 points on 5-shot digits).
EPISODE_STATISTICS_SHOTS = 5
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def interval(values: list[float]) -> str:
    """``mean ± half-width`` in percent (``± ?`` with one value)."""
    mean = 100 * statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.1f} ± ?"
    half = T95.get(len(values) - 1, 2.0) * 100 * statistics.stdev(values) / math.sqrt(len(values))
    return f"{mean:.1f} ± {half:.1f}"


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load() -> dict[str, list[dict]]:
    """Cell -> episode records of ``mini.jsonl`` (GPU), ``omni.jsonl`` and ``digits.jsonl``, with the rows of
    ``extra-*.jsonl`` (the same episodes, other rows) merged in by (cell, index)."""
    cells: dict[str, list[dict]] = {}
    by_key: dict[tuple[str, int], dict] = {}
    for name in ("mini.jsonl", "omni.jsonl", "digits.jsonl"):
        for record in records(RESULTS / name):
            cells.setdefault(record["cell"], []).append(record)
            by_key[record["cell"], record["index"]] = record
    for path in sorted(RESULTS.glob("extra-*.jsonl")):
        for extra in records(path):
            base = by_key.get((extra["cell"], extra["index"]))
            if base is not None:
                assert base["classes"] == extra["classes"], path
                base.update({k: v for k, v in extra.items() if k.startswith(("acc_", "sec_"))})
    for cell, cell_records in cells.items():
        shots = int(cell.split("w")[1])
        for record in cell_records:  # a rule not shipped: episode statistics from 5 shots
            row = "acc_all-episode" if shots >= EPISODE_STATISTICS_SHOTS else "acc_all"
            if row in record:
                record["acc_all-auto"] = record[row]
    return cells


def table(cells: dict[str, list[dict]], rows: list[str]) -> list[str]:
    head = ["cell", "n", "cross_cos", *rows]
    head += [f"{r} - {a}" for r in ("all", "all-auto") for a in ("max(LR, head)", "full FT")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell, records in cells.items():
        values = [f"{statistics.fmean(r['cross_cos'] for r in records):.2f}"]
        for row in rows:
            accs = [r[f"acc_{row}"] for r in records if f"acc_{row}" in r]
            values.append(interval(accs) if accs else "")
        for row in ("acc_all", "acc_all-auto"):
            done = [r for r in records if row in r]
            best = [r[row] - max(r["acc_lr"], r["acc_inductive"]) for r in done]
            full = [r[row] - r["acc_fullft"] for r in done]
            values += [interval(best) if best else "", interval(full) if full else ""]
        lines.append(f"| {cell} | {len(records)} | " + " | ".join(values) + " |")
    return lines


def seconds(cells: dict[str, list[dict]], rows: list[str]) -> list[str]:
    head = ["cell", *rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell, records in cells.items():
        values = [
            f"{statistics.median(r[f'sec_{row}'] for r in records):.1f}"
            if all(f"sec_{row}" in r for r in records) else ""
            for row in rows
        ]
        lines.append(f"| {cell} | " + " | ".join(values) + " |")
    return lines


def check_table(records: list[dict]) -> list[str]:
    """The test-class check: every row, and ``auto`` against the better anchor / the default
    and against full fine-tuning (paired, per episode)."""
    rows = ["ncm", "inductive", "default", "lr", "fullft", "auto"]
    head = ["cell", "n", "cross_cos", "auto chose", *rows]
    head += ["auto - max(LR, full FT)", "auto - default"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cells: dict[str, list[dict]] = {}
    for record in records:
        cells.setdefault(record["cell"], []).append(record)
    for cell, done in cells.items():
        chose = sorted({r["auto_scope"] for r in done})
        values = [f"{statistics.fmean(r['cross_cos'] for r in done):.2f}", ", ".join(chose)]
        values += [interval([r[f"acc_{row}"] for r in done]) for row in rows]
        best = [r["acc_auto"] - max(r["acc_lr"], r["acc_fullft"]) for r in done]
        default = [r["acc_auto"] - r["acc_default"] for r in done]
        values += [interval(best), interval(default)]
        lines.append(f"| {cell} | {len(done)} | " + " | ".join(values) + " |")
    return lines


#: Rows of the test-class check in the bundle for ``anyshot report``, and their labels.
BUNDLE_ROWS = {
    "auto": "default (--scope auto)",
    "inductive": "head, inductive",
    "lr": "logistic regression",
    "fullft": "full fine-tuning",
}


def bundle(check: list[dict]) -> dict:
    """The test-class check as an ``anyshot report`` bundle: one block per (cell, row), its
    episodes' accuracies."""
    domains = {"m224": ("mini-imagenet", 10), "o84": ("omniglot", 5)}
    results = []
    cells: dict[str, list[dict]] = {}
    for record in check:
        cells.setdefault(record["cell"], []).append(record)
    for cell, done in cells.items():
        dataset, queries = domains[cell.split("-")[0]]
        ways, shots = (int(v) for v in cell.split("-")[1].split("w"))
        for row, label in BUNDLE_ROWS.items():
            config = {"dataset": dataset, "split": "test", "protocol": "fixed", "ways": ways,
                      "shots": shots, "queries": queries, "label": label}  # fmt: skip
            episodes = [{"accuracy": r[f"acc_{row}"], "index": r["index"]} for r in done]
            results.append({"config": config, "episodes": episodes})
    return {"results": results}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--bundle":
        check = records(RESULTS / "test-check.jsonl")
        Path(sys.argv[2]).write_text(json.dumps(bundle(check), indent=1) + "\n")
        return
    check = records(RESULTS / "test-check.jsonl")
    out = ["## Test classes: the rule as shipped (`--scope auto`), GPU", "", *check_table(check), ""]
    out += ["## Test classes: seconds per episode (median, one H200)", ""]
    check_cells: dict[str, list[dict]] = {}
    for record in check:
        check_cells.setdefault(record["cell"], []).append(record)
    out += [*seconds(check_cells, ["ncm", "inductive", "default", "lr", "fullft", "auto"]), ""]
    curve = load()
    rows = ["ncm", "inductive", "default", "lr", "last", "all", "all-batch", "all-episode", "fullft"]
    shown = [*rows[:-1], "all-auto", "all-paper", "all-paper-transductive", "all-paper-episode"]
    shown.append("fullft")
    out += ["## Accuracy (val), percent", "", *table(curve, shown), ""]
    out += ["## Seconds per episode (median; mini-ImageNet: one H200; the others: 1 thread, "
            "2-core CPU shared by two runs)", ""]
    out += [*seconds(curve, rows), ""]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
