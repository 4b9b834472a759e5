"""The chosen score through the product's functions, every val cell: AUROC, AUPR, and the
threshold rule's false alarms / detections at a 5% target (mean and 95% CI over episodes).

``current``: ``nearest_mean_distance`` without a centre and ``unknown_threshold`` (the score
before this study); ``centred``: both with ``centre = outlier_centre(support, query)`` (rows
centred on the mean of the episode's unit support and query rows, the relu/nall/max of
``scores.py``). OSTIM's AUROC / AUPR are read from ``scores.json``. Also the false alarms of
the one-shot rule at other quantile levels. Writes ``final.json`` and prints the Markdown table.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from anyshot.outliers import nearest_mean_distance, outlier_centre, unknown_reference
from scores import EPISODES, mean_ci, metrics

HERE = Path(__file__).parent
RATE = 0.05
LEVELS = (0.2, 0.22, 0.25, 0.3)


def rule(b, distance, centre):
    outlier = b["query_targets"] < 0
    alarms, found, by_level = [], [], {lv: [] for lv in LEVELS}
    for e in range(len(distance)):
        c = None if centre is None else centre[e]
        ref = unknown_reference(b["support"][e], b["targets"][e], b["ways"], centre=c)
        flagged = distance[e] > ref.threshold(RATE)
        alarms.append(float(flagged[~outlier[e]].float().mean()))
        found.append(float(flagged[outlier[e]].float().mean()))
        if not ref.conformal:
            for lv in LEVELS:
                t = float(torch.quantile(ref.distances.double(), lv))
                by_level[lv].append(float((distance[e][~outlier[e]] > t).float().mean()))
    row = {"false_alarms": mean_ci(alarms), "detected": mean_ci(found)}
    if by_level[LEVELS[0]]:
        row["false_alarms_by_level"] = {str(lv): mean_ci(v) for lv, v in by_level.items()}
    return row


def main():
    torch.set_num_threads(1)
    record = {}
    for path in sorted(EPISODES.glob("*.pt")):
        b = torch.load(path)
        outlier = b["query_targets"] < 0
        rows = {}
        for name, centre in (
            ("current", None),
            ("centred", outlier_centre(b["support"], b["query"])),
        ):
            d = nearest_mean_distance(b["support"], b["targets"], b["query"], b["ways"], centre=centre)
            rows[name] = {**metrics(d, outlier), **rule(b, d, centre)}
        peers = json.loads((HERE / "scores.json").read_text())  # scores.py writes per cell
        rows["OSTIM"] = peers.get(path.stem, {}).get("OSTIM", {})
        record[path.stem] = rows
        print(path.stem, json.dumps(rows), flush=True)
        (HERE / "final.json").write_text(json.dumps(record, indent=1))
    lines = [
        "| cell | score | AUROC | AUPR | false alarms (5% target) | detected |",
        "|---|---|---|---|---|---|",
    ]
    for cell, rows in record.items():
        for name, r in rows.items():
            f = lambda k: f"{r[k][0]:.1f} ± {r[k][1]:.1f}" if k in r else "-"  # noqa: E731
            lines.append(
                f"| {cell} | {name} | {f('auroc')} | {f('aupr')} | {f('false_alarms')} | {f('detected')} |"
            )
    (HERE / "final.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
