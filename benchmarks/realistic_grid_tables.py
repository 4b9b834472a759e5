"""Merge realistic-grid runs and write their tables (per cell, and per group of cells).

``realistic_grid.py`` writes one JSON per run. A method that did not change need not be run
again: its summaries stay valid as long as the episodes are the same (the grid's episodes are
seeded per cell name, and every summary is relative to support-init on those episodes). This
script takes the runs in order, later ones overriding earlier ones method by method and cell by
cell, checks that support-init's per-episode accuracies agree wherever two runs share a cell
(the proof that the episodes are the same; :func:`same_episodes`), renames methods for the
tables (``--rename recommended=default``), and writes the merged JSON and a Markdown file: the
group table of the README (mean accuracy per domain and kind of cell, cells below support-init,
worst difference), then ``realistic_grid.markdown``'s per-cell table (accuracy ± 95% CI,
margin, ms/episode, ✗ = below support-init minus its CI). ``--episodes N`` first cuts every run
to the first ``N`` episodes of each cell (statistics recomputed from the stored per-episode
accuracies; ms/episode kept), so a run of the slow peers on the first 50 episodes merges with
full runs on the same episodes.

    .venv/bin/python benchmarks/realistic_grid_tables.py OLD.json NEW.json \\
        --rename recommended=default --order support-init,default,unguarded,tim,bd-cspn \\
        --output benchmarks/results/realistic-grid-test.json \\
        --markdown benchmarks/results/realistic-grid-test.md
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from anyshot.cli.options import positive_int
from realistic_grid import markdown, summaries

BASELINE = "support-init"

#: Group label per (domain, kind) of a cell name ``<domain>-<kind>-...``.
GROUPS = {
    "present": "present classes (K_eff 1/3/5 of K)",
    "balanced": "5-way balanced",
    "dirichlet0.5": "5-way Dirichlet(0.5)",
    "dirichlet2": "5-way Dirichlet(2)",
    "manyway": "many ways, balanced",
    "tiny": "1 to 40 query images",
    "unbalanced": "unequal labelled images, balanced queries",
    "unbalanced-queries": "unequal labelled images, Dirichlet or present-class queries",
    "unbalanced-few": "unequal labelled images, 5 or 20 query images",
}
DOMAINS = {"mini": "mini-ImageNet", "omni": "Omniglot"}


def merge(runs: list[dict[str, Any]], rename: dict[str, str]) -> dict[str, Any]:
    """One record of ``runs`` (later runs override earlier ones per cell and method)."""
    merged: dict[str, Any] = {"setting": runs[-1]["setting"], "cells": [], "results": {}}
    cells: dict[str, dict[str, Any]] = {}
    for run in runs:
        for cell in run["cells"]:
            cells[cell["name"]] = cell
        for name, row in run["results"].items():
            target = merged["results"].setdefault(name, {})
            shared = BASELINE in target and BASELINE in row
            if shared and not same_episodes(target[BASELINE], row[BASELINE]):
                raise SystemExit(f"{name}: support-init differs between runs: not the same")
            for method, summary in row.items():
                target[rename.get(method, method)] = summary
    merged["cells"] = list(cells.values())
    merged["setting"]["merged_from"] = len(runs)
    return merged


def same_episodes(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two runs' support-init summaries of a cell show the same episodes: the same
    per-episode accuracies, but for at most 1% of the episodes (a near-tie query that another
    CPU's float sums decide the other way: seen in 1 of 150 episodes)."""
    a, b = np.asarray(old["accuracies"]), np.asarray(new["accuracies"])
    return a.shape == b.shape and float(np.mean(a != b)) <= 0.01


def first_episodes(run: dict[str, Any], count: int) -> dict[str, Any]:
    """``run`` with every cell's summaries recomputed from its first ``count`` episodes."""
    results = {}
    for name, row in run["results"].items():
        kept = {
            method: (
                np.asarray(summary["accuracies"][:count]),
                np.full(min(count, len(summary["accuracies"])), summary["ms_per_episode"] / 1000),
            )
            for method, summary in row.items()
        }
        results[name] = summaries(kept)
    return {**run, "results": results}


def compact_json(record: dict[str, Any]) -> str:
    """``record`` as indented JSON with each list of numbers on one line (the per-episode
    accuracies would otherwise take a line each)."""
    text = json.dumps(record, indent=1)

    def one_line(match: re.Match[str]) -> str:
        return "[" + ", ".join(x.strip() for x in match.group(1).split(",")) + "]"

    return re.sub(r"\[\s+([-0-9.e+,\s]+?)\s+\]", one_line, text) + "\n"


def group_of(cell: str) -> str:
    """``mini-present-20w1s-k1`` -> ``mini-ImageNet: present classes (...)``."""
    domain, kind = cell.split("-")[:2]
    tail = cell.rsplit("-", 1)[-1][0]
    if kind == "unbalanced" and tail in "dk":  # -d0.5, -k3: the queries
        kind = "unbalanced-queries"
    elif kind == "unbalanced" and tail == "q":  # -q5, -q20: a few queries
        kind = "unbalanced-few"
    return f"{DOMAINS[domain]}: {GROUPS[kind]}"


def group_table(results: dict[str, dict[str, Any]], order: list[str]) -> list[str]:
    """Mean accuracy per group of cells; cells below support-init; the worst difference."""
    groups: dict[str, list[str]] = {}
    for cell in results:
        groups.setdefault(group_of(cell), []).append(cell)
    lines = ["| domain, cells | " + " | ".join(order) + " |", "|---" * (len(order) + 1) + "|"]
    for group, members in groups.items():
        means = []
        for method in order:
            values = [results[c][method]["accuracy"] for c in members if method in results[c]]
            means.append(f"{sum(values) / len(values):.1f}" if len(values) == len(members) else "-")
        lines.append(f"| {group} ({len(members)}) | " + " | ".join(means) + " |")
    below = ["**cells below support-init − its CI**", "-"]
    worst = ["worst difference (points)", "-"]
    for method in order[1:]:
        rows = {c: r[method] for c, r in results.items() if method in r}
        count = sum(s["below_support_init"] for s in rows.values())
        below.append(f"**{count}** of {len(rows)}")
        cell = min(rows, key=lambda c: rows[c]["accuracy"] - results[c][BASELINE]["accuracy"])
        delta = rows[cell]["accuracy"] - results[cell][BASELINE]["accuracy"]
        worst.append(f"{delta:+.1f} ({cell})")
    return [*lines, "| " + " | ".join(below) + " |", "| " + " | ".join(worst) + " |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="realistic_grid.py JSON files")
    parser.add_argument(
        "--rename", default="", help="old=new,... method names for the tables (last = splits)"
    )
    parser.add_argument("--order", required=True, help="methods, comma-separated, in column order")
    parser.add_argument("--output", type=Path, required=True, help="the merged JSON")
    parser.add_argument("--markdown", type=Path, required=True, help="the tables")
    parser.add_argument(
        "--episodes", type=positive_int, help="first N episodes of each cell only"
    )
    args = parser.parse_args()
    rename = dict(pair.rsplit("=", 1) for pair in args.rename.split(",") if pair)
    runs = [json.loads(p.read_text()) for p in args.runs]
    if args.episodes is not None:
        runs = [first_episodes(run, args.episodes) for run in runs]
    record = merge(runs, rename)
    record["setting"]["first_episodes"] = args.episodes
    order = args.order.split(",")
    split = record["setting"]["split"]
    text = [
        f"# Realistic grid, {split} (generated by benchmarks/realistic_grid_tables.py)",
        "",
        "Accuracy % ± 95% CI; ✗ = below support-init minus its CI half-width.",
        "",
        *group_table(record["results"], order),
        "",
        markdown(record),
    ]
    record["markdown"] = "\n".join(text)
    args.output.write_text(compact_json(record))
    args.markdown.write_text(record["markdown"] + "\n")
    print("\n".join(group_table(record["results"], order)))


if __name__ == "__main__":
    main()
