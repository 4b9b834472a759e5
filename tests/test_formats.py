"""Tests of the benchmark-format loaders: tiered-ImageNet, CIFAR-FS, FC100, mini-ImageNet folders.

Every test writes a tiny fixture in ``tmp_path`` in the exact on-disk format of the real release
(pickle structure and key names, PNG bytes, CIFAR-100 byte-string keys, split files) and loads it
through :func:`load_dataset`.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anyshot.data import Preprocessing, available_datasets, load_dataset
from anyshot.data.cifar_fs import CifarFS
from anyshot.data.fc100 import FC100, FC100_SUPERCLASSES
from anyshot.data.miniimagenet import MiniImageNet
from anyshot.data.tiered_imagenet import TieredImageNet
from anyshot.errors import DatasetError, ImageReadError

# Identity preprocessing at a given size: tensor values are pixel / 255.
RAW32 = Preprocessing(32, 3, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
RGB16 = Preprocessing(16, 3)

# The real CIFAR-100 superclass names, in coarse label order.
COARSE = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
]


def _pixels_of(tensor: torch.Tensor) -> np.ndarray:
    """An identity-preprocessed ``[3, H, W]`` tensor back to uint8 ``[H, W, 3]``."""
    return (tensor * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


# --------------------------------------------------------------------------- tiered-ImageNet
def _tiered_fixture(root: Path, split: str = "test") -> list[np.ndarray]:
    """Six 84x84 images of three classes; items alternate uint8 arrays (cv2) and bytes."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (84, 84, 3), dtype=np.uint8) for _ in range(6)]
    encoded: list[object] = [
        np.frombuffer(_png(a), dtype=np.uint8) if k % 2 == 0 else _png(a)
        for k, a in enumerate(arrays)
    ]
    _dump(root / f"{split}_images_png.pkl", encoded)
    _dump(
        root / f"{split}_labels.pkl",
        {
            "label_specific": np.array([0, 0, 1, 2, 2, 1]),
            "label_specific_str": ["n01530575", "n01531178", "n01532829"],
            "label_general": np.array([0, 0, 0, 1, 1, 0]),
            "label_general_str": ["bird", "fish"],
        },
    )
    return arrays


def test_tiered_imagenet_pickles(tmp_path: Path) -> None:
    arrays = _tiered_fixture(tmp_path)
    dataset = load_dataset("tiered-imagenet", tmp_path, "test")
    assert isinstance(dataset, TieredImageNet)
    assert dataset.class_names == ["n01530575", "n01531178", "n01532829"]
    assert dataset.labels.tolist() == [0, 0, 1, 2, 2, 1]
    assert dataset.class_counts().tolist() == [2, 2, 2]
    assert dataset.source(3) == f"{tmp_path / 'test_images_png.pkl'}[3]"
    for index in (0, 3):  # an ndarray item and a bytes item
        tensor = dataset.load(index, Preprocessing(84, 3, (0.0,) * 3, (1.0,) * 3))
        assert tensor.shape == (3, 84, 84)
        np.testing.assert_array_equal(_pixels_of(tensor), arrays[index])
    assert dataset.load_batch(range(6), RGB16).shape == (6, 3, 16, 16)


def test_tiered_imagenet_ids_without_names_and_python2_strings(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[:, 4:] = (10, 200, 30)
    data = _png(image)
    # A Python 2 pickle of a list of two byte strings (BINSTRING opcodes), as Python 2 wrote it.
    item = b"T" + struct.pack("<I", len(data)) + data
    (tmp_path / "val_images_png.pkl").write_bytes(b"\x80\x02]q\x00(" + item + item + b"e.")
    _dump(tmp_path / "val_labels.pkl", {b"label_specific": [7, 3]})
    dataset = load_dataset("tiered_imagenet", tmp_path, "val")
    assert dataset.class_names == ["3", "7"]
    assert dataset.labels.tolist() == [1, 0]
    tensor = dataset.load(1, Preprocessing(8, 3, (0.0,) * 3, (1.0,) * 3))
    np.testing.assert_array_equal(_pixels_of(tensor), image)


def test_tiered_imagenet_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="expected layout") as error:
        load_dataset("tiered-imagenet", tmp_path, "test")
    assert "test_images_png.pkl" in str(error.value) and "test_labels.pkl" in str(error.value)

    _tiered_fixture(tmp_path, "test")
    (tmp_path / "test_images_png.pkl").unlink()
    with pytest.raises(DatasetError, match="expected layout") as error:
        TieredImageNet(tmp_path, "test")
    assert "test_images_png.pkl" in str(error.value)
    assert "test_labels.pkl" not in str(error.value)

    _dump(tmp_path / "test_images_png.pkl", [b"x"] * 5)
    with pytest.raises(DatasetError, match="5 images but"):
        TieredImageNet(tmp_path, "test")
    _dump(tmp_path / "test_labels.pkl", {"labels": [0]})
    with pytest.raises(DatasetError, match="label_specific"):
        TieredImageNet(tmp_path, "test")
    (tmp_path / "test_labels.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match=r"test_labels\.pkl"):
        TieredImageNet(tmp_path, "test")

    _dump(tmp_path / "test_images_png.pkl", [b"garbage", 42])
    _dump(tmp_path / "test_labels.pkl", {"label_specific": [0, 0]})
    dataset = TieredImageNet(tmp_path, "test")
    with pytest.raises(ImageReadError, match=r"test_images_png\.pkl\[0\]"):
        dataset.image(0)
    with pytest.raises(ImageReadError, match="int"):
        dataset.image(1)


# --------------------------------------------------------------------------- CIFAR-100
FINE = ["apple", "beaver", "bee", "lion"]  # a fake 4-class CIFAR-100
FINE_TO_COARSE = {"apple": 4, "beaver": 0, "bee": 7, "lion": 8}


def _cifar_fixture(folder: Path, per_class: tuple[int, int] = (5, 2)) -> dict[str, np.ndarray]:
    """CIFAR-100 python pickles with the real keys (bytes, as Python 3 reads them with
    ``encoding="bytes"``); returns the ``data`` arrays of ``train`` and ``test``."""
    rng = np.random.default_rng(1)
    _dump(
        folder / "meta",
        {
            b"fine_label_names": [name.encode() for name in FINE],
            b"coarse_label_names": [name.encode() for name in COARSE],
        },
    )
    out = {}
    for part, count in zip(("train", "test"), per_class, strict=True):
        fine = [k % len(FINE) for k in range(count * len(FINE))]
        data = rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8)
        _dump(
            folder / part,
            {
                b"filenames": [f"img_{k}.png".encode() for k in range(len(fine))],
                b"batch_label": f"{part}ing batch 1 of 1".encode(),
                b"fine_labels": fine,
                b"coarse_labels": [FINE_TO_COARSE[FINE[f]] for f in fine],
                b"data": data,
            },
        )
        out[part] = data
    return out


def _cifar_image(row: np.ndarray) -> np.ndarray:
    """A CIFAR row (R, G, B planes, row-major) as ``[32, 32, 3]``."""
    return row.reshape(3, 32, 32).transpose(1, 2, 0)


def _splits(root: Path, **splits: list[str]) -> None:
    folder = root / "splits" / "bertinetto"
    folder.mkdir(parents=True, exist_ok=True)
    for name, classes in splits.items():
        (folder / f"{name}.txt").write_text("".join(f"{c}\n" for c in classes))


def test_cifar_fs_pools_train_and_test_images(tmp_path: Path) -> None:
    data = _cifar_fixture(tmp_path / "cifar-100-python")
    _splits(tmp_path, train=["apple", "lion"], val=["lion"], test=["bee", "beaver", ""])
    dataset = load_dataset("cifar-fs", tmp_path, "test")
    assert isinstance(dataset, CifarFS)
    assert dataset.class_names == ["beaver", "bee"]
    assert len(dataset) == 14 and dataset.class_counts().tolist() == [7, 7]
    # CIFAR order: train rows 1, 2, 5, 6, ..., then test rows 1, 2, 5, 6.
    assert dataset.labels.tolist() == [0, 1] * 7
    assert dataset.source(0) == f"{tmp_path / 'cifar-100-python' / 'train'}[1]"
    assert dataset.source(11) == f"{tmp_path / 'cifar-100-python' / 'test'}[2]"
    first = dataset.load(0, RAW32)
    assert first.shape == (3, 32, 32)
    np.testing.assert_array_equal(_pixels_of(first), _cifar_image(data["train"][1]))
    np.testing.assert_array_equal(
        _pixels_of(dataset.load(11, RAW32)), _cifar_image(data["test"][2])
    )
    assert dataset.load_batch([0, 13], RGB16).shape == (2, 3, 16, 16)
    assert load_dataset("CIFAR_FS", tmp_path, "train").class_names == ["apple", "lion"]


def test_cifar_fs_accepts_the_files_directly_in_root(tmp_path: Path) -> None:
    data = _cifar_fixture(tmp_path)
    _splits(tmp_path, val=["lion"])
    dataset = load_dataset("cifarfs", tmp_path, "val")
    assert dataset.class_names == ["lion"] and len(dataset) == 7
    np.testing.assert_array_equal(
        _pixels_of(dataset.load(0, RAW32)), _cifar_image(data["train"][3])
    )


def test_cifar_fs_missing_files_and_unknown_classes(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="expected CIFAR-100 layout") as error:
        load_dataset("cifar-fs", tmp_path, "test")
    assert str(tmp_path / "splits" / "bertinetto" / "test.txt") in str(error.value)

    _splits(tmp_path, test=["bee"], val=["tiger"])
    with pytest.raises(DatasetError, match="expected CIFAR-100 layout") as error:
        load_dataset("cifar-fs", tmp_path, "test")
    assert str(tmp_path / "meta") in str(error.value)

    _cifar_fixture(tmp_path / "cifar-100-python")
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(DatasetError, match="expected CIFAR-100 layout") as error:
        load_dataset("cifar-fs", tmp_path, "test")
    assert str(tmp_path / "cifar-100-python" / "meta") in str(error.value)
    assert f"{tmp_path / 'cifar-100-python' / 'train'}'" not in str(error.value)

    _cifar_fixture(tmp_path / "cifar-100-python")
    with pytest.raises(DatasetError, match="'tiger'") as error:
        load_dataset("cifar-fs", tmp_path, "val")
    assert "val.txt" in str(error.value)

    _dump(tmp_path / "cifar-100-python" / "test", {b"data": np.zeros((2, 10), np.uint8)})
    with pytest.raises(DatasetError, match=r"uint8 \[N, 3072\]"):
        load_dataset("cifar-fs", tmp_path, "test")


# --------------------------------------------------------------------------- FC100
def test_fc100_superclass_split_is_a_partition_of_cifar100() -> None:
    splits = [set(FC100_SUPERCLASSES[s]) for s in ("train", "val", "test")]
    assert [len(s) for s in splits] == [12, 4, 4]
    assert set.union(*splits) == set(COARSE)
    assert splits[2] == {"aquatic_mammals", "insects", "medium_mammals", "people"}


def test_fc100_splits_by_superclass(tmp_path: Path) -> None:
    data = _cifar_fixture(tmp_path / "cifar-100-python")
    test = load_dataset("fc100", tmp_path, "test")
    assert isinstance(test, FC100)
    assert test.class_names == ["beaver", "bee"]
    assert test.class_counts().tolist() == [7, 7]
    np.testing.assert_array_equal(_pixels_of(test.load(1, RAW32)), _cifar_image(data["train"][2]))
    assert load_dataset("FC-100", tmp_path, "val").class_names == ["lion"]
    train = load_dataset("fc100", tmp_path, "train")
    assert train.class_names == ["apple"] and len(train) == 7
    assert train.load_batch(range(7), RGB16).shape == (7, 3, 16, 16)


def test_fc100_missing_files_and_bad_split(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="expected CIFAR-100 layout") as error:
        load_dataset("fc100", tmp_path, "test")
    for name in ("train", "test", "meta"):
        assert str(tmp_path / name) in str(error.value)
    with pytest.raises(DatasetError, match="train, val, test"):
        load_dataset("fc100", tmp_path, "trainval")
    _cifar_fixture(tmp_path)
    _dump(tmp_path / "meta", {b"fine_label_names": [n.encode() for n in FINE]})
    with pytest.raises(DatasetError, match="coarse_label_names"):
        load_dataset("fc100", tmp_path, "test")


# --------------------------------------------------------------------------- mini-ImageNet
def test_mini_imagenet_folder_per_class_layout(tmp_path: Path) -> None:
    colours = {"n01532829": (200, 30, 40), "n01558993": (20, 180, 90)}
    for wnid, colour in colours.items():
        folder = tmp_path / "test" / wnid
        folder.mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (84, 84), colour).save(folder / f"{wnid}0000000{k}.jpg", quality=95)
    dataset = load_dataset("mini-imagenet", tmp_path, "test")
    assert isinstance(dataset, MiniImageNet) and dataset.layout == "folder"
    assert dataset.class_names == sorted(colours)
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1, 1]
    tensor = dataset.load(4, RAW32)
    assert tensor.shape == (3, 32, 32)
    mean = _pixels_of(tensor).reshape(-1, 3).astype(float).mean(axis=0)
    np.testing.assert_allclose(mean, colours["n01558993"], atol=3)
    with pytest.raises(DatasetError, match="expected layout") as error:
        load_dataset("mini-imagenet", tmp_path, "val")
    assert "val.csv" in str(error.value)


def test_registry_lists_the_formats() -> None:
    assert {"tiered-imagenet", "cifar-fs", "fc100", "mini-imagenet"} <= set(available_datasets())
