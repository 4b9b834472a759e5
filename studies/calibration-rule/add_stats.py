"""Add row-similarity statistics to a ``collect.py`` file (same cells, seeds and episodes):

* ``cross_cos``: mean cosine between support rows of different classes (unit rectified rows):
  its expectation does not depend on the shots (unlike the class means' cosine ``si_sim``);
* ``within_cos``: mean cosine between support rows of the same class (nan at one shot);
* ``query_cos``: mean cosine between distinct query rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anyshot.evaluation.cached import episode_tensors, plan_batches
from anyshot.feature_cache import FeatureCache
from anyshot.methods.cosine import unit_embeddings
from calibration import cells as calibration_cells
from collect import EXTRA
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import dataset_split, embed_episodes
from realistic_grid import DOMAINS, grid

NEW = ("cross_cos", "within_cos", "query_cos")


def row_stats(support: torch.Tensor, targets: torch.Tensor, query: torch.Tensor, ways: int) -> torch.Tensor:
    """``[E, 3]``: :data:`NEW` of ``support [E, S, D]``, ``targets [E, S]``, ``query [E, Q, D]``."""
    us, uq = unit_embeddings(support), unit_embeddings(query)
    gram = us @ us.transpose(1, 2)  # [E, S, S]
    same = targets[:, :, None] == targets[:, None, :]
    eye = torch.eye(support.shape[1], dtype=torch.bool)
    cross = (gram * ~same).sum((1, 2)) / (~same).sum((1, 2))
    within_mask = same & ~eye
    within = (gram * within_mask).sum((1, 2)) / within_mask.sum((1, 2)).clamp_min(1)
    within[within_mask.sum((1, 2)) == 0] = float("nan")
    q = query.shape[1]
    qg = uq @ uq.transpose(1, 2)
    qcos = (qg.sum((1, 2)) - qg.diagonal(dim1=1, dim2=2).sum(1)) / max(q * (q - 1), 1)
    return torch.stack([cross, within, qcos], 1).double()


def main() -> None:
    path = Path(sys.argv[1])
    split = sys.argv[2] if len(sys.argv) > 2 else "val"
    torch.set_num_threads(1)
    saved = torch.load(path)
    if "cross_cos" in saved["stats"]:
        return
    every = {c.name: c for c in calibration_cells(300)}
    every.update({c.name: c for c in grid({"mini": 16 if split == "val" else 20, "omni": 100}, 150)
                  if c.name in EXTRA})
    for name, domain in DOMAINS.items():
        mine = [every[n] for n in saved["cells"] if every[n].domain == name]
        data = dataset_split(DATA_ROOT, domain.dataset, split)
        labels = np.asarray(data.labels)
        specs = {c.name: list(c.sampler(labels, c.seed(saved["seed"])).take(len(saved["cells"][c.name]["targets"]))) for c in mine}
        cache = FeatureCache(FEATURE_CACHE, channels_last=domain.channels_last)
        features = embed_episodes(cache, domain.network(), data, [s for v in specs.values() for s in v]).features
        for cell in mine:
            rows = torch.empty(len(specs[cell.name]), len(NEW), dtype=torch.float64)
            for batch in plan_batches(specs[cell.name]):
                support, targets, query, query_targets = episode_tensors(features, [specs[cell.name][i] for i in batch])
                rows[batch] = row_stats(support.float(), targets.long(), query.float(), cell.ways)
                for j, i in enumerate(batch):  # the same episodes as collect.py
                    assert torch.equal(query_targets[j].long(), saved["cells"][cell.name]["targets"][i].long())
            raw = saved["cells"][cell.name]
            raw["stats"] = torch.cat([raw["stats"], rows], 1)
            print(cell.name, rows.nanmean(0).tolist(), flush=True)
    saved["stats"] = (*saved["stats"], *NEW)
    torch.save(saved, path)


if __name__ == "__main__":
    main()
