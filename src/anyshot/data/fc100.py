"""FC100, "Fewshot-CIFAR100" (Oreshkin et al., 2018, TADAM): CIFAR-100 split by superclass.

The 20 CIFAR-100 superclasses are split 12 / 4 / 4, so that train, val and test classes share no
superclass; each split has the 5 fine classes of each of its superclasses (60 / 20 / 20 classes,
600 images each, CIFAR-100 train and test pooled).

Split source: the superclass lists shipped with Torchmeta (Deleu et al.,
``torchmeta/datasets/assets/cifar100/fc100/{train,test}.json``, and its FC100 ``val.json``), the
reference implementation most FC100 numbers are reported with. As CIFAR-100 coarse label indices:
train 1-6, 9, 10, 15, 17-19; val 8, 11, 13, 16; test 0, 7, 12, 14. Note that
large_man-made_outdoor_things, large_natural_outdoor_scenes, reptiles and trees are *train*
superclasses there, not val.

Expected layout: the CIFAR-100 python pickles, ``ROOT/cifar-100-python/{train,test,meta}`` or
those three files directly in ``ROOT`` (no split files needed).
"""

from __future__ import annotations

import os
from pathlib import Path

from anyshot.data.cifar_fs import CIFAR100_LAYOUT, Cifar100Classes, read_cifar100
from anyshot.errors import DatasetError

__all__ = ["FC100", "FC100_SUPERCLASSES"]

FC100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "train": (
        "fish",
        "flowers",
        "food_containers",
        "fruit_and_vegetables",
        "household_electrical_devices",
        "household_furniture",
        "large_man-made_outdoor_things",
        "large_natural_outdoor_scenes",
        "reptiles",
        "trees",
        "vehicles_1",
        "vehicles_2",
    ),
    "val": (
        "large_carnivores",
        "large_omnivores_and_herbivores",
        "non-insect_invertebrates",
        "small_mammals",
    ),
    "test": ("aquatic_mammals", "insects", "medium_mammals", "people"),
}

LAYOUT = f"FC100 needs only CIFAR-100: {CIFAR100_LAYOUT}"


class FC100(Cifar100Classes):
    """One split of FC100: the fine classes of the split's superclasses.

    Class names are the CIFAR-100 fine class names, sorted.

    Args:
        root: folder with ``cifar-100-python/`` or the CIFAR-100 files themselves.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Attributes:
        superclasses: the split's superclass names.

    Raises:
        DatasetError: unknown split, CIFAR-100 files missing, or the meta file lacks one of the
            split's superclasses (not the CIFAR-100 superclass names).
    """

    def __init__(self, root: str | os.PathLike[str], split: str) -> None:
        if split not in FC100_SUPERCLASSES:
            raise DatasetError(
                f"unknown FC100 split {split!r}; choose one of {', '.join(FC100_SUPERCLASSES)}"
            )
        self.root = Path(root)
        self.split = split
        self.superclasses = FC100_SUPERCLASSES[split]
        try:
            cifar = read_cifar100(self.root)
        except DatasetError as error:
            raise DatasetError(f"FC100: {error}") from error
        unknown = [name for name in self.superclasses if name not in cifar.coarse_names]
        if unknown:
            raise DatasetError(
                f"FC100 split {split!r}: superclasses {', '.join(unknown)} are not in "
                f"'coarse_label_names' of {str(cifar.folder / 'meta')!r}; {LAYOUT}"
            )
        wanted = set(self.superclasses)
        names = sorted(fine for fine, coarse in cifar.superclass_of().items() if coarse in wanted)
        if not names:
            raise DatasetError(
                f"FC100 split {split!r}: no CIFAR-100 image belongs to the superclasses "
                f"{', '.join(self.superclasses)} in {str(cifar.folder)!r}"
            )
        super().__init__(cifar, names)

    def __repr__(self) -> str:
        return (
            f"FC100({str(self.root)!r}, split={self.split!r}: {self.num_classes} classes, "
            f"{len(self)} images)"
        )
