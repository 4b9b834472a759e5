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
from anyshot.episode_files import load_episodes
from anyshot.feature_cache import FeatureCache
from anyshot.methods.presets import RECOMMENDED
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes
from realistic_grid import DOMAINS

HERE = Path(__file__).parent
VALUES = (0.9, 0.85, 0.8, 0.7)
CELLS = [f"{d}-{k}-5w{s}s" for d in ("mini", "omni") for k in ("balanced", "dirichlet0.5", "dirichlet2") for s in (1, 5)]


def main() -> None:
    torch.set_num_threads(1)
    out = {}
    for name, domain in DOMAINS.items():
        data = dataset_split(DATA_ROOT, domain.dataset, "val")
        cache = FeatureCache(FEATURE_CACHE, channels_last=domain.channels_last)
        network = domain.network()
        for cell in [c for c in CELLS if c.startswith(name)]:
            specs = load_episodes(Path("/tmp/grid-episodes/val") / f"{cell}.jsonl", data)
            batch = EpisodeBatch.of(embed_episodes(cache, network, data, specs, show_progress=False).features, specs)

            def accuracy() -> np.ndarray:
                logits = RECOMMENDED.fit_features(batch.support, batch.targets, batch.query, ways=batch.ways,
                                                  episodes_per_chunk=len(specs)).query_logits
                return (logits.argmax(-1) == batch.query_targets).float().mean(1).numpy()

            balance.BALANCED_SHRINKAGE = 0.95
            default = accuracy()
            row, text = {"default": 100 * float(default.mean())}, f"{cell:24s} 0.95 {100 * default.mean():5.1f}"
            for value in VALUES:
                balance.BALANCED_SHRINKAGE = value
                d = 100 * (accuracy() - default)
                row[str(value)] = [float(d.mean()), 1.96 * float(d.std()) / len(d) ** 0.5]
                text += f"  {value:g}: {d.mean():+.2f}±{row[str(value)][1]:.2f}"
            out[cell] = row
            print(text, flush=True)
    for value in VALUES:
        print(f"{value:g}: mean difference {np.mean([r[str(value)][0] for r in out.values()]):+.3f}")
    (HERE / "shrinkage.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
