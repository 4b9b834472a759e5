"""The centred score only where the queries cover the classes (VALIDATION classes).

The centred score (``final.py``) was reverted because on query sets of a few of many classes
its centre leans towards them and flags their own images (``studies/outlier-alarm``). Here the
product's rule, :func:`anyshot.outliers.covering_centre`: centre only where the queries'
nearest class means spread over at least ``COVERING_SHARE`` of the classes.

Part 1, open-set val episodes of ``episodes.py`` (``/tmp/open-set-score``): AUROC, AUPR, false
alarms and detections at a 5% target for ``current`` (never centred), ``centred`` (always) and
``covering`` (the rule), with the share of episodes the rule centred; OSTIM from
``scores.json``. Part 2, query sets without outliers (the val cells of
``studies/safe-gate/study2.py``, features of ``studies/present-gate``, 100 episodes each): share
of query images flagged at a 5% target and the share of episodes centred.

    cd studies/present-gate
    export OMP_NUM_THREADS=1 PYTHONPATH=$PWD/../../src:$PWD/../safe-gate:$PWD/../../benchmarks:$PWD:$PWD/../open-set-score ANYSHOT_STUDY_OUT=$PWD/out
    python ../open-set-score/covering.py > ../open-set-score/covering.log
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from anyshot.outliers import covering_centre, nearest_mean_distance, outlier_centre, unknown_threshold
from scores import EPISODES, mean_ci, metrics

HERE = Path(__file__).parent
RATE = 0.05
PART2 = ("pres", "bal", "q75", "q100")


def centres(support, targets, query, ways):
    """name -> (centre [E, D] or None, centred [E] bool) of each variant."""
    e = support.shape[0]
    full = outlier_centre(support, query)
    return {
        "current": (None, torch.zeros(e, dtype=torch.bool)),
        "centred": (full, torch.ones(e, dtype=torch.bool)),
        "covering": covering_centre(support, targets, query, ways),
    }


def flags(support, targets, query, ways, centre, centred):
    """[E, Q] bool: queries above their episode's 5% threshold."""
    d = nearest_mean_distance(support, targets, query, ways, centre=centre)
    out = []
    for e in range(len(d)):
        c = centre[e] if centre is not None and bool(centred[e]) else None
        out.append(d[e] > unknown_threshold(support[e], targets[e], ways, RATE, centre=c))
    return d, torch.stack(out)


def part1() -> dict:
    peers = json.loads((HERE / "scores.json").read_text())
    record = {}
    for path in sorted(EPISODES.glob("*.pt")):
        b = torch.load(path)
        s, t, q, k = b["support"], b["targets"], b["query"], b["ways"]
        outlier = b["query_targets"] < 0
        rows = {}
        for name, (centre, centred) in centres(s, t, q, k).items():
            d, flagged = flags(s, t, q, k, centre, centred)
            alarms = [float(flagged[e][~outlier[e]].float().mean()) for e in range(len(d))]
            found = [float(flagged[e][outlier[e]].float().mean()) for e in range(len(d))]
            rows[name] = {**metrics(d, outlier), "false_alarms": mean_ci(alarms),
                          "detected": mean_ci(found), "centred": float(centred.float().mean())}
        rows["OSTIM"] = peers.get(path.stem, {}).get("OSTIM", {})
        record[path.stem] = rows
        print(path.stem, " | ".join(f"{n} AUROC {r['auroc'][0]:.1f} FA {r.get('false_alarms', [float('nan')])[0]:.1f}"
                                    f" det {r.get('detected', [float('nan')])[0]:.1f} c {r.get('centred', float('nan')):.2f}"
                                    for n, r in rows.items() if 'auroc' in r), flush=True)
    return record


def part2() -> dict:
    import grid
    from study2 import SEED2, cells

    feats, record = {}, {}
    for i, (ds, name, kind, ways, shots, eps, kw) in enumerate(cells()):
        if not any(p in name for p in PART2):
            continue
        if ds not in feats:
            feats[ds] = grid.load(ds)
        f, members = feats[ds]
        try:
            s_idx, tgt, q_idx, _ = grid.make_cell(members, kind, ways, shots, min(eps, 100), SEED2 + i, **kw)
        except ValueError:
            continue
        s, t, q = f[s_idx], torch.as_tensor(tgt), f[q_idx]
        row = {}
        for label, (centre, centred) in centres(s, t, q, ways).items():
            _, flagged = flags(s, t, q, ways, centre, centred)
            row[label] = {"flagged": 100 * float(flagged.float().mean()), "centred": float(centred.float().mean())}
        record[name] = row
        print(f"{name:26s} flagged % (5% target): " + ", ".join(
            f"{k} {v['flagged']:.1f}" for k, v in row.items()) + f"; centred {row['covering']['centred']:.2f}", flush=True)
    return record


def main() -> None:
    torch.set_num_threads(1)
    record = {"open_set": part1(), "no_outliers": part2()}
    (HERE / "covering.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
