"""Which query sets get the balance term: the default on the 5-way standard cells of the
realistic grid's val episodes with :data:`anyshot.methods.balance.BALANCED_SHRINKAGE` (the
looks-balanced test's threshold, 0.95 shipped) lowered, paired differences per cell.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks .venv/bin/python studies/standard-cells/shrinkage.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import anyshot.methods.balance as balance
from anyshot.methods.presets import RECOMMENDED
from cells import val_batches
from harness.episodes import EpisodeBatch

HERE = Path(__file__).parent
VALUES = (0.9, 0.85, 0.8, 0.7)


def accuracy(batch: EpisodeBatch) -> np.ndarray:
    """``[E]`` the default's accuracy per episode of ``batch``."""
    logits = RECOMMENDED.fit_features(batch.support, batch.targets, batch.query, ways=batch.ways,
                                      episodes_per_chunk=len(batch.support)).query_logits
    return (logits.argmax(-1) == batch.query_targets).float().mean(1).numpy()


def main() -> None:
    torch.set_num_threads(1)
    out = {}
    for cell, batch in val_batches():
        balance.BALANCED_SHRINKAGE = 0.95
        default = accuracy(batch)
        row, text = {"default": 100 * float(default.mean())}, f"{cell:24s} 0.95 {100 * default.mean():5.1f}"
        for value in VALUES:
            balance.BALANCED_SHRINKAGE = value
            d = 100 * (accuracy(batch) - default)
            row[str(value)] = [float(d.mean()), 1.96 * float(d.std()) / len(d) ** 0.5]
            text += f"  {value:g}: {d.mean():+.2f}±{row[str(value)][1]:.2f}"
        out[cell] = row
        print(text, flush=True)
    for value in VALUES:
        print(f"{value:g}: mean difference {np.mean([r[str(value)][0] for r in out.values()]):+.3f}")
    (HERE / "shrinkage.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
