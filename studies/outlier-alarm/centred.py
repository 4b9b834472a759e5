"""``outlier_rate`` / ``outlier_alarm`` with the product's centred flags (VALIDATION classes).

``anyshot.methods.head.inlier_queries`` flags on uncentred rows (as ``run.py`` studied them).
The product's outlier scores are now centred where the queries cover the classes
(``anyshot.outliers.covering_centre``; AUROC +4 on mini-ImageNet val). This runs ``run.py``
with ``inlier_queries`` replaced by the centred rule (patched here, not in the product), to
see whether better flags make the alarm worth a default: the same episodes and variants as
``run.py``; compare with ``val.json``.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks:studies/outlier-alarm .venv/bin/python \\
        studies/outlier-alarm/centred.py --episodes 200 --output studies/outlier-alarm/val-centred.json
"""

from __future__ import annotations

import torch

import anyshot.methods.finetune as finetune
import anyshot.methods.head as head
import run
from anyshot.methods.features import EpisodeRows
from anyshot.outliers import covering_centre, nearest_mean_distance, unknown_threshold


def centred_inlier_queries(rows: EpisodeRows, rate: float, relu: bool) -> torch.Tensor:
    """``inlier_queries`` on the product's covering centre."""
    centre, covered = covering_centre(rows.support, rows.targets, rows.query, rows.ways, relu=relu)
    distance = nearest_mean_distance(
        rows.support, rows.targets, rows.query, rows.ways, relu=relu, centre=centre
    )
    thresholds = [
        unknown_threshold(s, t, rows.ways, rate, relu=relu, centre=c if bool(k) else None)
        for s, t, c, k in zip(rows.support.cpu(), rows.targets.cpu(), centre.cpu(), covered, strict=True)
    ]
    return distance <= torch.tensor(thresholds, device=distance.device).unsqueeze(1)


head.inlier_queries = centred_inlier_queries
finetune.inlier_queries = centred_inlier_queries
run.inlier_queries = centred_inlier_queries

if __name__ == "__main__":
    run.main()
