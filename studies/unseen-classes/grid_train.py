"""The realistic grid on TRAINING classes: a held-out check of the default on classes no rule was
tuned on (every rule of the default was chosen on val classes; test was run once per change).

The backbone is the ImageNet EfficientNet-Lite0, which never saw mini-ImageNet's or Omniglot's
split, so the train classes are as new to it as val and test. To keep embedding short, each
domain is a subset of its train split: mini-ImageNet the first ``--mini-classes`` classes
(sorted wnids) with the first ``--mini-images`` images each; Omniglot the first
``--omni-classes`` characters (every image). The cells are ``realistic_grid.py``'s, with K =
"every class" taken as the subset's class count; episodes saved under ``--episodes-dir``.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/unseen-classes/grid_train.py \
        --split val --episodes 100 --episodes-dir /tmp/train-episodes --cells 'omni-*' \
        --methods support-init,recommended,unguarded --output train.json
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import realistic_grid as rg
from anyshot.data import ImageDataset
from anyshot.errors import DatasetError

OPTIONS = {"--mini-classes": 20, "--mini-images": 100, "--omni-classes": 200}


class ClassSubset(ImageDataset):
    """Classes ``classes`` of ``dataset`` (relabelled 0..), at most ``per_class`` items each."""

    def __init__(self, dataset: ImageDataset, classes: list[int], per_class: int | None) -> None:
        by_class = dataset.indices_by_class()
        self.items = [int(i) for k in classes for i in by_class[k][:per_class]]
        labels = [new for new, k in enumerate(classes) for _ in by_class[k][:per_class]]
        super().__init__([dataset.class_names[k] for k in classes], labels)
        self.dataset = dataset

    def source(self, index: int) -> str:
        return self.dataset.source(self.items[self.check_index(index)])

    def image(self, index: int) -> Image.Image:
        return self.dataset.image(self.items[self.check_index(index)])


def take_options() -> dict[str, int]:
    """Remove this script's own options from ``sys.argv`` (the rest is realistic_grid's)."""
    values = dict(OPTIONS)
    for flag in OPTIONS:
        if flag in sys.argv:
            at = sys.argv.index(flag)
            values[flag] = int(sys.argv[at + 1])
            del sys.argv[at : at + 2]
    return values


def train_subsets(original: Callable[[Path, str, str], Any], values: dict[str, int]) -> Any:
    """A ``dataset_split`` that gives the train subsets in place of ``original``'s splits."""

    def train_subset(data_root: Path, name: str, split: str) -> Any:
        if name == "mini-imagenet":  # shipped copies often lack the train images
            try:
                train = original(data_root, name, "train")
            except DatasetError as error:
                print(f"mini-ImageNet: {error}; its val classes stand in", flush=True)
                return original(data_root, name, split)
            return ClassSubset(train, list(range(values["--mini-classes"])), values["--mini-images"])
        train = original(data_root, name, "train")
        chosen = np.random.default_rng(0).permutation(train.num_classes)[: values["--omni-classes"]]
        return ClassSubset(train, sorted(int(k) for k in chosen), None)

    return train_subset


def main() -> None:
    values = take_options()
    rg.dataset_split = train_subsets(rg.dataset_split, values)
    rg.main()


if __name__ == "__main__":
    main()
