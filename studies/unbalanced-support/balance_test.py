"""How often the default's balance test passes on the val unequal-support cells, first run
centred on the support (the default) or on the episode (``center_on='episode'``).

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/unbalanced-support/balance_test.py \\
        --episodes-dir EPISODES > balance_test.txt
"""

import argparse
import dataclasses
from pathlib import Path

import torch

from anyshot.feature_cache import FeatureCache
from anyshot.methods import head
from anyshot.methods.presets import RECOMMENDED
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import dataset_split, embed_episodes
from realistic_grid import DOMAINS, cell_episodes, episode_tensors, grid, select

passed: list[torch.Tensor] = []
original = head.looks_balanced


def recording(counts: torch.Tensor) -> torch.Tensor:
    result = original(counts)
    passed.append(result.clone())
    return result


head.looks_balanced = recording


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes-dir", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, domain in DOMAINS.items():
        data = dataset_split(DATA_ROOT, domain.dataset, "val")
        cells = select(grid({"mini": 16, "omni": 20, name: data.num_classes}, None),
                       f"{name}-unbalanced")
        cache = FeatureCache(FEATURE_CACHE, channels_last=domain.channels_last)
        drawn = {c.name: cell_episodes(c, data, 0, args.episodes_dir, "val")[0] for c in cells}
        every = [s for specs in drawn.values() for s in specs]
        features = embed_episodes(cache, domain.network(), data, every).features
        for cell, specs in drawn.items():
            support, targets, query, truth = episode_tensors(features, specs)
            for center in ("adaptive", "episode"):
                method = dataclasses.replace(RECOMMENDED, center_on=center)
                passed.clear()
                logits = method.fit_features(support, targets, query, ways=len(specs[0].classes))
                accuracy = (logits.query_logits.argmax(-1) == truth).double().mean()
                share = float(torch.cat(passed).double().mean()) if passed else float("nan")
                print(f"{cell:32s} {center:9s} balance test passed in {100 * share:5.1f}% of "
                      f"first runs, accuracy {100 * float(accuracy):.1f}", flush=True)


if __name__ == "__main__":
    main()
