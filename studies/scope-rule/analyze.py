"""Tables of the scope-rule study from ``results/*.jsonl`` (see README.md).

    python studies/scope-rule/analyze.py > studies/scope-rule/tables.md

Signals missing from a cell's records (cells run before the signal was added) are taken from
``results/signals/<cell>.jsonl`` (``study.py --rows signals``: the same episodes, support only).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"

SIGNALS = [
    "cross_cos",
    "inet_pair_same",
    "inet_pair_top1",
    "inet_marginal_entropy",
    "inet_mutual_info",
    "inet_distinct_top1",
    "inet_top1_share",
    "inet_maxprob",
    "inet_entropy",
    "between_cos",
    "between_cos_max",
    "feat_norm",
    "loo_ncm",
    "within_cos",
    "margin_cos",
    "inet_purity",
]
ORDER = ["o84", "o224", "m224"]
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def t95(n: int) -> float:
    return T95.get(n - 1, 2.26 if n < 11 else 2.09 if n < 25 else 2.0)


def load() -> dict[str, list[dict]]:
    cells: dict[str, list[dict]] = {}
    for path in sorted(RESULTS.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        rows = [r for r in rows if "acc_head" in r and "acc_last" in r]
        extra = RESULTS / "signals" / path.name
        if extra.exists():
            by_index = {}
            for line in extra.read_text().splitlines():
                if line:
                    s = json.loads(line)
                    by_index[s["index"]] = s
            for r in rows:
                s = by_index.get(r["index"])
                if s is not None:
                    assert s["classes"] == r["classes"], path
                    for k in SIGNALS:
                        if k not in r and k in s:
                            r[k] = s[k]
        if rows:
            cells[path.stem] = sorted(rows, key=lambda r: r["index"])
    return dict(sorted(cells.items(), key=lambda kv: _key(kv[0])))


def _key(tag: str) -> tuple:
    prefix, rest = tag.split("-")
    ways, shots = rest.split("w")
    return (ORDER.index(prefix) if prefix in ORDER else 9, int(shots), int(ways))


def domain(tag: str) -> str:
    return "omniglot" if tag.startswith("o") else "mini-imagenet"


def mean_ci(values: list[float]) -> tuple[float, float]:
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, float("nan")
    return m, t95(len(values)) * statistics.stdev(values) / math.sqrt(len(values))


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def cell_table(cells: dict[str, list[dict]]) -> None:
    print("| cell | episodes | head % | last % | last - head (95% CI) | last wins / ties / "
          "losses | support-init % | median s / episode head / last |")
    print("|---|---|---|---|---|---|---|---|")
    for tag, rows in cells.items():
        h = [r["acc_head"] for r in rows]
        la = [r["acc_last"] for r in rows]
        d = [b - a for a, b in zip(h, la)]
        md, cd = mean_ci(d)
        w = sum(x > 1e-9 for x in d)
        lo = sum(x < -1e-9 for x in d)
        # medians: the first episode warms up, and some episodes include minutes in which the
        # machine's owner had paused this study's processes for a timing of its own
        th = statistics.median(r["sec_head"] for r in rows)
        tl = statistics.median(r["sec_last"] for r in rows)
        print(
            f"| {tag} | {len(rows)} | {pct(statistics.fmean(h))} | {pct(statistics.fmean(la))} "
            f"| {100 * md:+.2f} ± {100 * cd:.2f} | {w} / {len(d) - w - lo} / {lo} "
            f"| {pct(statistics.fmean(r['acc_ncm'] for r in rows))} | {th:.1f} / {tl:.1f} |"
        )


def signal_table(cells: dict[str, list[dict]], names: list[str]) -> None:
    print("| cell | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for tag, rows in cells.items():
        parts = []
        for k in names:
            v = [r[k] for r in rows if k in r]
            if not v:
                parts.append("-")
            elif len(v) == 1:
                parts.append(f"{v[0]:.3f}")
            else:
                parts.append(f"{statistics.fmean(v):.3f} ± {statistics.stdev(v):.3f} "
                             f"[{min(v):.2f}, {max(v):.2f}]")
        print(f"| {tag} | " + " | ".join(parts) + " |")


def rule_accuracy(rows: list[dict], signal: str, threshold: float, below: bool) -> float:
    """Mean accuracy of 'last when signal < threshold (below) / > threshold, else head'."""
    acc = []
    for r in rows:
        use_last = (r[signal] < threshold) if below else (r[signal] > threshold)
        acc.append(r["acc_last"] if use_last else r["acc_head"])
    return statistics.fmean(acc)


def best_rules(cells: dict[str, list[dict]]) -> list[tuple]:
    """For each signal present in every episode: the threshold and direction that maximise the
    mean over cells (each cell weighs the same) of the rule's accuracy; with the interval of
    thresholds that reach it and the domains' signal ranges."""
    every = [r for rows in cells.values() for r in rows]
    out = []
    for k in SIGNALS:
        if not all(k in r for r in every):
            continue
        values = sorted({r[k] for r in every})
        cuts = [values[0] - 1e-6] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [
            values[-1] + 1e-6
        ]
        best = None
        for below in (True, False):
            scores = []
            for t in cuts:
                s = statistics.fmean(rule_accuracy(rows, k, t, below) for rows in cells.values())
                scores.append(s)
            top = max(scores)
            good = [t for t, s in zip(cuts, scores) if s >= top - 1e-9]
            if best is None or top > best[0]:
                best = (top, below, good)
        top, below, good = best
        t = (min(good) + max(good)) / 2
        omni = [r[k] for r in every if r["dataset"] == "omniglot"]
        mini = [r[k] for r in every if r["dataset"] != "omniglot"]
        out.append((k, top, below, t, min(good), max(good), omni, mini))
    return sorted(out, key=lambda x: -x[1])


def main() -> None:
    cells = load()
    if not cells:
        sys.exit("no results")
    every = [r for rows in cells.values() for r in rows]
    head = statistics.fmean(statistics.fmean(r["acc_head"] for r in rows) for rows in cells.values())
    last = statistics.fmean(statistics.fmean(r["acc_last"] for r in rows) for rows in cells.values())
    oracle = statistics.fmean(
        max(statistics.fmean(r["acc_head"] for r in rows), statistics.fmean(r["acc_last"] for r in rows))
        for rows in cells.values()
    )
    print("## Accuracy per cell (paired episodes)\n")
    cell_table(cells)
    print("\n## Signals per cell: mean ± sd [min, max] over episodes\n")
    names = [k for k in SIGNALS if any(k in r for r in every)]
    signal_table(cells, names[:7])
    print()
    signal_table(cells, names[7:])
    print("\n## One-signal rules: 'last when signal < t' (or > t), else head\n")
    print(f"Mean over the {len(cells)} cells (each weighs the same): head {pct(head)}, last "
          f"{pct(last)}, the better of the two per cell {pct(oracle)}.\n")
    print("| signal | rule | mean over cells % | thresholds reaching it | Omniglot range | "
          "mini-ImageNet range | gap between domains |")
    print("|---|---|---|---|---|---|---|")
    rules = best_rules(cells)
    for k, top, below, t, lo, hi, omni, mini in rules:
        sign = "<" if below else ">"
        if below:
            gap = min(mini) - max(omni)
        else:
            gap = min(omni) - max(mini)
        print(f"| {k} | last if {sign} {t:.3f} | {pct(top)} | [{lo:.3f}, {hi:.3f}] | "
              f"[{min(omni):.3f}, {max(omni):.3f}] | [{min(mini):.3f}, {max(mini):.3f}] | "
              f"{gap:+.3f} |")
    print("\n## The best rules per cell: accuracy % of head / last / rule\n")
    shown = rules[:4]
    print("| cell | head | last | " + " | ".join(
        f"{k} {'<' if b else '>'} {t:.3f}" for k, _, b, t, *_ in shown) + " |")
    print("|---|---|---|" + "---|" * len(shown))
    for tag, rows in cells.items():
        parts = [pct(rule_accuracy(rows, k, t, b)) for k, _, b, t, *_ in shown]
        print(f"| {tag} | {pct(statistics.fmean(r['acc_head'] for r in rows))} | "
              f"{pct(statistics.fmean(r['acc_last'] for r in rows))} | " + " | ".join(parts) + " |")
    print("\n## Domain separation: signal ranges (all episodes) per domain and image size\n")
    separation(cells, signal_only_cells())
    print("\n## Within a cell: correlation of the signal with last - head (Pearson, episodes)\n")
    names_c = [k for k, *_ in rules[:6]]
    print("| cell | " + " | ".join(names_c) + " |")
    print("|---|" + "---|" * len(names_c))
    for tag, rows in cells.items():
        d = [r["acc_last"] - r["acc_head"] for r in rows]
        parts = []
        for k in names_c:
            v = [r[k] for r in rows]
            if len(rows) < 3 or statistics.pstdev(v) == 0 or statistics.pstdev(d) == 0:
                parts.append("-")
            else:
                parts.append(f"{statistics.correlation(v, d):+.2f}")
        print(f"| {tag} | " + " | ".join(parts) + " |")


def signal_only_cells() -> dict[str, list[dict]]:
    """Signals of ``results/signals/<tag>.jsonl`` for tags with no accuracy run (the other
    image size of a domain)."""
    out = {}
    for path in sorted((RESULTS / "signals").glob("*.jsonl")):
        if not (RESULTS / path.name).exists():
            out[path.stem] = [json.loads(line) for line in path.read_text().splitlines() if line]
    return out


def separation(cells: dict[str, list[dict]], extra: dict[str, list[dict]]) -> None:
    """Per signal: its range per domain and image size (every episode of every cell, with the
    signal-only cells), the gap between the domains at each size, and the rule with the
    threshold in the middle of the gap at the product's sizes, cell by cell."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for rows in list(cells.values()) + list(extra.values()):
        for r in rows:
            groups.setdefault((r["dataset"], r["image_size"]), []).append(r)
    keys = sorted(groups)
    print("| signal | " + " | ".join(f"{d} {size} px" for d, size in keys)
          + " | gap at 84 px | gap at 224 px | gap, Omniglot 84 vs mini-ImageNet 224 |")
    print("|---|" + "---|" * (len(keys) + 3))
    rules = []
    for k in SIGNALS:
        ranges = {}
        for key in keys:
            v = [r[k] for r in groups[key] if k in r]
            ranges[key] = (min(v), max(v), statistics.fmean(v)) if v else None
        parts = [f"{lo:.3f} .. {hi:.3f}" if rng else "-" for rng in ranges.values()
                 for lo, hi, _ in [rng or (0, 0, 0)]]

        def gap(a, b):
            ra, rb = ranges.get(a), ranges.get(b)
            if not ra or not rb:
                return None
            # positive: the two ranges do not overlap, by this much
            return max(rb[0] - ra[1], ra[0] - rb[1]), ra, rb

        gaps = []
        for a, b in [(("omniglot", 84), ("mini-imagenet", 84)),
                     (("omniglot", 224), ("mini-imagenet", 224)),
                     (("omniglot", 84), ("mini-imagenet", 224))]:
            g = gap(a, b)
            gaps.append("-" if g is None else f"{g[0]:+.3f}")
        print(f"| {k} | " + " | ".join(parts) + " | " + " | ".join(gaps) + " |")
        # the rule's threshold: middle of the gap between every Omniglot and every
        # mini-ImageNet episode with accuracies (the product's image sizes and o224)
        omni = [r[k] for rows in cells.values() for r in rows if r["dataset"] == "omniglot" and k in r]
        mini = [r[k] for rows in cells.values() for r in rows if r["dataset"] != "omniglot" and k in r]
        if omni and mini and all(k in r for rows in cells.values() for r in rows):
            if max(omni) < min(mini):
                rules.append((k, (max(omni) + min(mini)) / 2, True, min(mini) - max(omni)))
            elif min(omni) > max(mini):
                rules.append((k, (min(omni) + max(mini)) / 2, False, min(omni) - max(mini)))
    if not rules:
        return
    print("\nSignals whose Omniglot and mini-ImageNet episodes do not overlap, the threshold in the "
          "middle of the gap: accuracy % per cell of head / last / the rule\n")
    print("| cell | head | last | " + " | ".join(
        f"{k} {'<' if b else '>'} {t:.3f} (gap {g:.3f})" for k, t, b, g in rules) + " |")
    print("|---|---|---|" + "---|" * len(rules))
    for tag, rows in cells.items():
        parts = [pct(rule_accuracy(rows, k, t, b)) for k, t, b, _ in rules]
        print(f"| {tag} | {pct(statistics.fmean(r['acc_head'] for r in rows))} | "
              f"{pct(statistics.fmean(r['acc_last'] for r in rows))} | " + " | ".join(parts) + " |")


if __name__ == "__main__":
    main()
