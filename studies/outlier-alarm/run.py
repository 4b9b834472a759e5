"""Leave flagged queries out only when the flags say the queries hold outliers (issue 17).

Validation classes only. The query sets of ``benchmarks/open_set.py``'s part 2 (5-way, 1 and 5
shots, 20 inlier queries plus 0, 5 or 20 outliers of other classes, the same seeded episodes
for the three shares): inlier accuracy of the default and of the default with
``outlier_rate`` r and ``outlier_alarm`` a (leave out the queries flagged at rate r only in an
episode whose flagged count is significant at level a under Binomial(Q, r)), and how often the
alarm fires. Then, for the chosen variant, the alarm's rate on the clean calibration cells
(balanced and Dirichlet query sets, 5-way) is printed by ``--clean``.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks .venv/bin/python studies/outlier-alarm/run.py \\
        --output studies/outlier-alarm/val.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from anyshot.episodes import OUTLIER
from anyshot.feature_cache import FeatureCache
from anyshot.methods.features import EpisodeRows
from anyshot.methods.head import inlier_queries, outlier_alarm
from anyshot.methods.presets import RECOMMENDED
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes, run_method
from open_set import SHARE_INLIERS, SHARES, SHOTS, sampled
from realistic_grid import DOMAINS

VARIANTS = {
    "default": RECOMMENDED,
    **{
        f"rate {r:g} alarm {a:g}": dataclasses.replace(RECOMMENDED, outlier_rate=r, outlier_alarm=a)
        for r in (0.05, 0.2)
        for a in (0.01, 0.001)
    },
}


def inlier_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    inlier = targets != OUTLIER
    correct = (logits.argmax(-1) == targets) & inlier
    return (correct.sum(1) / inlier.sum(1)).double().numpy()


def alarm_rate(batch: EpisodeBatch, rate: float, level: float) -> float:
    rows = EpisodeRows(batch.support, batch.targets, batch.query, batch.ways)
    flagged = ~inlier_queries(rows, rate, True)
    return float(outlier_alarm(flagged, rate, level).double().mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/anyshot-features"))
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    record: dict = {}
    for name in ("mini", "omni"):
        domain = DOMAINS[name]
        data = dataset_split(args.data_root, domain.dataset, "val")
        cache = FeatureCache(args.cache_dir, channels_last=domain.channels_last)
        for shots in SHOTS:
            specs = {s: sampled(data, shots, SHARE_INLIERS, c, args.episodes, 0) for s, c in SHARES.items()}
            every = [x for v in specs.values() for x in v]
            features = embed_episodes(cache, domain.network(), data, every).features
            batches = {s: EpisodeBatch.of(features, v) for s, v in specs.items()}
            cell = f"{name}-{shots}s"
            record[cell] = {}
            for label, method in VARIANTS.items():
                acc = {s: inlier_accuracy(run_method(method, b).logits, b.query_targets) for s, b in batches.items()}
                row = {s: [100 * acc[s].mean(), 196 * acc[s].std() / np.sqrt(len(acc[s]))] for s in acc}
                for s in ("20%", "50%"):
                    d = acc[s] - acc["0%"]
                    row[f"{s} - clean"] = [100 * d.mean(), 196 * d.std() / np.sqrt(len(d))]
                if method.outlier_rate > 0 and method.outlier_alarm > 0:
                    row["alarm"] = {s: alarm_rate(b, method.outlier_rate, method.outlier_alarm) for s, b in batches.items()}
                record[cell][label] = row
                print(cell, label, json.dumps({k: (np.round(v, 2).tolist() if isinstance(v, list) else v) for k, v in row.items()}), flush=True)
            args.output.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
