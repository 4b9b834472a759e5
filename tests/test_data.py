"""Tests of anyshot.data: datasets, loaders, lazy image sequences, the Omniglot sample.

Tests marked with the real-data fixtures read ``../shared/data`` (Omniglot zips, mini-ImageNet
val/test images) and skip with a reason when it is absent; everything else builds tiny images
in ``tmp_path``.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from anyshot.data import (
    FileDataset,
    FolderDataset,
    ImageDataset,
    LazyImages,
    MiniImageNet,
    Omniglot,
    Preprocessing,
    available_datasets,
    decode_image,
    load_dataset,
    sample_root,
)
from anyshot.errors import DatasetError, EmptyClassError, ImageReadError

SHARED = Path(__file__).parents[1].parent / "shared" / "data"
OMNIGLOT = SHARED / "omniglot"
MINI_IMAGENET = SHARED / "mini-imagenet"

RGB = Preprocessing(32, 3)
GREY = Preprocessing(32, 1, (0.5,), (0.5,))


@pytest.fixture(scope="module")
def omniglot_root() -> Path:
    if not (OMNIGLOT / "images_evaluation.zip").is_file():
        pytest.skip(f"real Omniglot data not found at {OMNIGLOT} (../shared/data/omniglot)")
    return OMNIGLOT


@pytest.fixture(scope="module")
def mini_imagenet_root() -> Path:
    if not (MINI_IMAGENET / "val.csv").is_file() or not (MINI_IMAGENET / "images").is_dir():
        pytest.skip(f"real mini-ImageNet data not found at {MINI_IMAGENET}")
    return MINI_IMAGENET


@pytest.fixture(scope="module")
def omniglot_test(omniglot_root: Path) -> Omniglot:
    return Omniglot(omniglot_root, "test")


def _half_image(size: tuple[int, int] = (40, 30)) -> Image.Image:
    """A grey image, black on the left half and white on the right half."""
    image = Image.new("L", size, 0)
    image.paste(255, (size[0] // 2, 0, size[0], size[1]))
    return image


def _write(path: Path, image: Image.Image | None = None, **save: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (image or _half_image()).save(path, **save)
    return path


# --------------------------------------------------------------------------- FolderDataset
def test_folder_dataset_classes_labels_nesting_and_skips(tmp_path: Path) -> None:
    root = tmp_path / "data"
    cat_a = _write(root / "cat" / "a.png")
    cat_b = _write(root / "cat" / "sub" / "deep" / "b.JPG", _half_image().convert("RGB"))
    dog_c = _write(root / "dog" / "c.jpeg", _half_image().convert("RGB"))
    dog_d = _write(root / "dog" / "d.bmp")
    eel_e = _write(root / "eel" / "e.webp")
    eel_f = _write(root / "eel" / "f.TIFF")
    eel_g = _write(root / "eel" / "g.gif")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "readme.md").write_text("loose file")
    _write(root / "dog" / ".hidden.png")
    _write(root / "dog" / ".cache" / "x.png")
    _write(root / ".git" / "y.png")

    dataset = FolderDataset(root)

    assert isinstance(dataset, ImageDataset)
    assert dataset.class_names == ["cat", "dog", "eel"]
    assert len(dataset) == 7
    assert dataset.labels.dtype == np.int64
    assert dataset.labels.tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert [dataset.source(i) for i in range(7)] == [
        str(p) for p in (cat_a, cat_b, dog_c, dog_d, eel_e, eel_f, eel_g)
    ]
    assert sorted(dataset.skipped) == [str(root / "dog" / "notes.txt"), str(root / "readme.md")]
    assert [ix.tolist() for ix in dataset.indices_by_class()] == [[0, 1], [2, 3], [4, 5, 6]]
    assert dataset.class_counts().tolist() == [2, 2, 3]
    batch = dataset.load_batch(range(7), RGB)
    assert batch.shape == (7, 3, 32, 32)
    assert torch.isfinite(batch).all()


def test_folder_dataset_leaves_an_empty_class_out_and_says_so(tmp_path: Path) -> None:
    _write(tmp_path / "full" / "a.png")
    _write(tmp_path / "other" / "b.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    dataset = FolderDataset(tmp_path)
    assert dataset.class_names == ["full", "other"] and dataset.labels.tolist() == [0, 1]
    reason = dataset.skip_reasons[str(tmp_path / "empty")]
    assert reason == "no image file (skipped: 1 not an image file): class left out"
    for name in ("full", "other"):
        shutil.rmtree(tmp_path / name)
    with pytest.raises(DatasetError, match="has 0 class folders with images: none"):
        FolderDataset(tmp_path)
    (tmp_path / "empty" / "fake.jpg").write_text("not an image")  # an image file, unreadable
    with pytest.raises(EmptyClassError, match=r"no class folder of .* holds an image"):
        FolderDataset(tmp_path)


def test_folder_dataset_scans_as_classify_does_without_following_linked_folders(
    tmp_path: Path,
) -> None:
    """One scan for both, but a dataset's class folders keep their own images: a link to a
    folder (here into another class) is listed, not walked, so no image changes class and the
    seeded episodes do not depend on links; a class folder that is a link is read."""
    a = _write(tmp_path / "data" / "cat" / "a.png")
    pup = _write(tmp_path / "data" / "wolf" / "pups" / "p.png")
    (tmp_path / "data" / "cat" / "looks_like").symlink_to(tmp_path / "data" / "wolf" / "pups")
    (tmp_path / "data" / "cat" / "loop").symlink_to(tmp_path / "data" / "cat")
    d = _write(tmp_path / "elsewhere" / "d.png")
    (tmp_path / "data" / "dog").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "data" / "wolf" / "photo.heic").write_bytes(b"heic")
    dataset = FolderDataset(tmp_path / "data")
    assert dataset.class_names == ["cat", "dog", "wolf"]
    assert [dataset.source(i) for i in range(3)] == [
        str(a),
        str(tmp_path / "data" / "dog" / d.name),
        str(pup),
    ]
    assert dataset.skipped == [
        str(tmp_path / "data" / "cat" / "looks_like"),
        str(tmp_path / "data" / "cat" / "loop"),
        str(tmp_path / "data" / "wolf" / "photo.heic"),
    ]
    assert "not followed" in dataset.skip_reasons[str(tmp_path / "data" / "cat" / "loop")]

    (tmp_path / "data" / "eel").mkdir()
    (tmp_path / "data" / "eel" / "fake.jpg").write_text("not an image")
    dataset = FolderDataset(tmp_path / "data")  # a class of files Pillow cannot open: left out
    assert dataset.class_names == ["cat", "dog", "wolf"]
    assert dataset.skip_reasons[str(tmp_path / "data" / "eel")].endswith("class left out")
    assert dataset.skip_reasons[str(tmp_path / "data" / "eel" / "fake.jpg")] == (
        "Pillow cannot read its image header"
    )


def test_folder_dataset_missing_or_flat_root_explains_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as error:
        FolderDataset(tmp_path / "nowhere")
    assert "ROOT/<class name>/<image files>" in str(error.value)

    _write(tmp_path / "flat" / "a.png")
    with pytest.raises(DatasetError, match="no class folders") as error:
        FolderDataset(tmp_path / "flat")
    assert "ROOT/<class name>/<image files>" in str(error.value)

    with pytest.raises(DatasetError, match="not a folder"):
        FolderDataset(tmp_path / "flat" / "a.png")


# --------------------------------------------------------------------------- decoding
def _palette_with_transparency() -> Image.Image:
    image = _half_image().convert("P")
    image.info["transparency"] = 255  # a palette index no pixel uses
    return image


MODES = {
    "1": (lambda: _half_image().convert("1"), "png"),
    "L": (lambda: _half_image(), "png"),
    "P": (lambda: _half_image().convert("P"), "png"),
    "P-transparent": (_palette_with_transparency, "png"),
    "RGBA": (lambda: _half_image().convert("RGBA"), "png"),
    "LA": (lambda: _half_image().convert("LA"), "png"),
    "CMYK": (lambda: _half_image().convert("CMYK"), "jpg"),
    "I;16": (lambda: _half_image().convert("I;16"), "png"),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_image_mode_decodes_to_the_preprocessing_shape(tmp_path: Path, mode: str) -> None:
    make, extension = MODES[mode]
    image = make()
    path = _write(tmp_path / "c" / f"img.{extension}", image)
    dataset = FolderDataset(tmp_path)
    assert dataset.image(0).mode == Image.open(path).mode

    for preprocessing in (RGB, GREY):
        tensor = dataset.load(0, preprocessing)
        assert tensor.shape == (preprocessing.channels, 32, 32)
        assert tensor.dtype == torch.float32
        # the content survives: black left half -> -1, white right half -> +1 (mean 0.5, std 0.5)
        assert tensor[:, :, :14].mean() < -0.8, mode
        assert tensor[:, :, 18:].mean() > 0.8, mode


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 8, 8))  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    _write(tmp_path / "c" / "rotated.jpg", stored, exif=exif.tobytes(), quality=95)
    dataset = FolderDataset(tmp_path)

    shown = dataset.image(0).convert("RGB")
    assert shown.size == (20, 40)
    pixel = np.asarray(shown)[2, 17]  # the stored top-left block is now at the top-right
    assert pixel[0] > 200 and pixel[2] < 50
    assert dataset.load(0, RGB).shape == (3, 32, 32)
    assert dataset.load(0, GREY).shape == (1, 32, 32)


def test_corrupt_and_truncated_images_raise_image_read_error_naming_the_file(
    tmp_path: Path,
) -> None:
    good = _write(tmp_path / "c" / "good.png")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    truncated = _write(tmp_path / "c" / "truncated.png", Image.fromarray(noise))
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    garbage = tmp_path / "c" / "garbage.jpg"
    garbage.write_bytes(b"this is not a JPEG file at all")
    os.mkfifo(tmp_path / "c" / "pipe.jpg")  # not a regular file: never opened (it would block)
    folder = FolderDataset(tmp_path)  # a header Pillow cannot read: left out at the scan
    assert folder.skipped == [str(garbage), str(tmp_path / "c" / "pipe.jpg")] and len(folder) == 2
    dataset = FileDataset([garbage, good, truncated], [0, 0, 0], ["c"])
    assert [dataset.source(i) for i in range(3)] == [str(garbage), str(good), str(truncated)]

    assert dataset.load(1, RGB).shape == (3, 32, 32)
    for index, path in ((0, garbage), (2, truncated)):
        with pytest.raises(ImageReadError) as error:
            dataset.load(index, RGB)
        assert str(path) in str(error.value)
        assert "BytesIO" not in str(error.value) and "object at 0x" not in str(error.value)
    with pytest.raises(ImageReadError, match=r"the file is cut short \(truncated\)"):
        dataset.load(2, RGB)
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"  # a phone photo renamed .jpg
    with pytest.raises(ImageReadError, match=r"'x\.jpg': a HEIC image, a format anyshot does not"):
        decode_image(heic, "x.jpg")
    with pytest.raises(ImageReadError, match=r"garbage\.jpg"):
        dataset.load_batch([1, 0], RGB)


def test_dataset_rejects_empty_classes_and_bad_indices(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.png")
    with pytest.raises(EmptyClassError, match="'unused'"):
        FileDataset([path], [0], ["used", "unused"])
    dataset = FileDataset([path, path], [0, 0], ["used"])
    assert dataset.source(-1) == str(path)
    with pytest.raises(IndexError):
        dataset.image(2)
    assert dataset.load_batch([], RGB).shape == (0, 3, 32, 32)


# --------------------------------------------------------------------------- LazyImages
def test_lazy_images_decode_only_what_is_accessed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k in range(6):
        shade = Image.new("L", (10, 10), 40 * k)
        _write(tmp_path / ("a" if k < 3 else "b") / f"{k}.png", shade)
    folder = FolderDataset(tmp_path)  # read through image() when decoded in full:
    dataset = FileDataset(folder.paths, folder.labels, folder.class_names)
    decoded: list[int] = []
    original = dataset.image

    def counting_image(index: int) -> Image.Image:
        decoded.append(index)
        return original(index)

    monkeypatch.setattr(dataset, "image", counting_image)

    lazy = dataset.images([5, 0, 3, 1], GREY)
    assert isinstance(lazy, LazyImages)
    assert len(lazy) == 4
    assert lazy.image_shape == (1, 32, 32)
    assert decoded == []

    first = lazy[1]
    assert decoded == [0]
    assert torch.allclose(first, torch.full((1, 32, 32), -1.0))  # shade 0 -> -1
    last = lazy[-1]
    assert decoded == [0, 1]
    assert torch.equal(last, dataset.load(1, GREY))
    decoded.clear()

    batch = lazy.load_batch(1, 3)
    assert decoded == [0, 3]
    assert batch.shape == (2, 1, 32, 32)
    assert torch.equal(batch, torch.stack([lazy[1], lazy[2]]))
    assert torch.equal(lazy.load_batch(), dataset.load_batch([5, 0, 3, 1], GREY))
    assert torch.equal(lazy.load_batch(), torch.stack(list(lazy)))

    tail = lazy[2:]
    assert isinstance(tail, LazyImages) and len(tail) == 2
    assert torch.equal(tail[0], lazy[2])
    assert lazy.source(0) == dataset.source(5)
    with pytest.raises(IndexError):
        lazy[4]
    with pytest.raises(IndexError):
        dataset.images([6], GREY)


# --------------------------------------------------------------------------- Omniglot
def test_omniglot_real_test_split(omniglot_test: Omniglot, omniglot_root: Path) -> None:
    dataset = omniglot_test
    assert dataset.num_classes == 1692
    assert len(dataset) == 1692 * 20
    assert np.all(dataset.class_counts() == 20)
    split_lines = (omniglot_root / "splits" / "vinyals" / "test.txt").read_text().split()
    assert dataset.class_names == split_lines
    image = dataset.image(0)
    assert image.size == (105, 105) and image.mode == "1"
    assert dataset.load(0, Preprocessing(28, 1, (0.5,), (0.5,))).shape == (1, 28, 28)
    assert dataset.source(0).startswith(str(omniglot_root / "images_evaluation.zip") + ":")


@pytest.mark.parametrize(("split", "classes"), [("val", 688), ("train", 4112)])
def test_omniglot_real_other_splits(omniglot_root: Path, split: str, classes: int) -> None:
    dataset = Omniglot(omniglot_root, split)
    assert dataset.num_classes == classes
    assert len(dataset) == classes * 20
    assert np.all(dataset.class_counts() == 20)
    # train spans both zips: read one image from each
    for zip_id in np.unique(dataset.zip_ids):
        index = int(np.flatnonzero(dataset.zip_ids == zip_id)[0])
        assert dataset.image(index).size == (105, 105)


def test_omniglot_rotations_match_numpy_rot90(omniglot_test: Omniglot) -> None:
    dataset = omniglot_test
    by_class = dataset.indices_by_class()
    name = dataset.class_names[0]
    assert name.endswith("/rot000")
    character = name.rpartition("/")[0]
    upright = np.asarray(dataset.image(int(by_class[0][3])))
    assert upright.any() and not upright.all()
    for quarter_turns in (1, 2, 3):
        label = dataset.class_names.index(f"{character}/rot{90 * quarter_turns:03d}")
        rotated = np.asarray(dataset.image(int(by_class[label][3])))
        assert np.array_equal(rotated, np.rot90(upright, quarter_turns))
        assert dataset.source(int(by_class[label][3])).endswith(f"@rot{90 * quarter_turns:03d}")


def test_omniglot_without_rotations(omniglot_root: Path) -> None:
    dataset = Omniglot(omniglot_root, "test", rotations=False)
    assert dataset.num_classes == 423
    assert all(name.endswith("/rot000") for name in dataset.class_names)
    assert not dataset.degrees.any()


def _read_items(indices: list[int]) -> tuple[list[np.ndarray], bool]:
    """Read items in a forked worker; also report whether its zip handles are its own."""
    assert _FORKED is not None
    arrays = [np.asarray(_FORKED.image(i)) for i in indices]
    own = all(pid == os.getpid() for pid, _ in _FORKED._handles.values())
    return arrays, own


_FORKED: Omniglot | None = None


def test_omniglot_reopens_its_zip_after_fork(omniglot_test: Omniglot) -> None:
    global _FORKED
    dataset = omniglot_test
    indices = [0, 21, 500, 33000]
    expected = [np.asarray(dataset.image(i)) for i in indices]  # parent's handle is open
    _FORKED = dataset
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.map(_read_items, [indices, indices[::-1]])
    finally:
        _FORKED = None
    (first, own_first), (second, own_second) = results
    assert own_first and own_second  # each worker re-opened the zip instead of sharing the fd
    assert all(np.array_equal(a, b) for a, b in zip(first, expected, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(second, expected[::-1], strict=True))
    assert np.array_equal(np.asarray(dataset.image(0)), expected[0])


def test_omniglot_missing_files_explain_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"test\.txt") as error:
        Omniglot(tmp_path, "test")
    assert "splits/vinyals" in str(error.value)
    shutil.copytree(sample_root() / "splits", tmp_path / "splits")
    with pytest.raises(DatasetError, match=r"images_evaluation\.zip") as error:
        Omniglot(tmp_path, "test")
    assert "images_background.zip" in str(error.value)
    with pytest.raises(DatasetError, match="unknown Omniglot split"):
        Omniglot(tmp_path, "everything")


def test_omniglot_sample_ships_and_loads() -> None:
    root = sample_root()
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert size < 1_000_000
    assert "Lake" in (root / "README.md").read_text()
    dataset = Omniglot(root, "test")
    assert dataset.num_classes == 4 * 39
    assert len(dataset) == dataset.num_classes * 20
    assert np.all(dataset.class_counts() == 20)
    alphabets = {name.split("/")[0] for name in dataset.class_names}
    assert len(alphabets) == 13
    batch = dataset.images(range(0, len(dataset), 97), GREY).load_batch()
    assert batch.shape == (len(range(0, len(dataset), 97)), 1, 32, 32)


def test_omniglot_sample_is_a_byte_exact_slice_of_the_real_test_split(
    omniglot_root: Path,
) -> None:
    root = sample_root()
    full_split = set((omniglot_root / "splits" / "vinyals" / "test.txt").read_text().split())
    assert set((root / "splits" / "vinyals" / "test.txt").read_text().split()) <= full_split
    with (
        zipfile.ZipFile(root / "images_evaluation.zip") as sample,
        zipfile.ZipFile(omniglot_root / "images_evaluation.zip") as full,
    ):
        members = [name for name in sample.namelist() if name.endswith(".png")]
        assert len(members) == 39 * 20
        assert all(sample.read(name) == full.read(name) for name in members)


# --------------------------------------------------------------------------- mini-ImageNet
def test_mini_imagenet_real_val_and_test(mini_imagenet_root: Path) -> None:
    for split, classes in (("val", 16), ("test", 20)):
        dataset = MiniImageNet(mini_imagenet_root, split)
        assert dataset.num_classes == classes
        assert len(dataset) == classes * 600
        assert np.all(dataset.class_counts() == 600)
        assert dataset.class_names == sorted(dataset.class_names)
        assert all(name.startswith("n") and len(name) == 9 for name in dataset.class_names)
        image = dataset.image(0)
        assert image.size == (84, 84) and image.mode == "RGB"
        assert Path(dataset.source(0)).name.startswith(dataset.class_names[dataset.labels[0]])


def test_mini_imagenet_real_train_images_absent(mini_imagenet_root: Path) -> None:
    with pytest.raises(DatasetError, match="38400 of the 38400 images") as error:
        MiniImageNet(mini_imagenet_root, "train")
    assert "train.csv" in str(error.value)


def _write_csv_fixture(root: Path) -> list[tuple[str, str]]:
    rows = [
        ("b1.jpg", "n02000000"),
        ("b2.jpg", "n02000000"),
        ("a1.jpg", "n01000000"),
        ("a2.jpg", "n01000000"),
        ("a3.jpg", "n01000000"),
    ]
    for name, _ in rows:
        _write(root / "images" / name, _half_image().convert("RGB"))
    lines = ["filename,label", *[f"{name},{label}" for name, label in rows]]
    (root / "val.csv").write_text("\n".join(lines) + "\n")
    return rows


def test_mini_imagenet_csv_layout(tmp_path: Path) -> None:
    rows = _write_csv_fixture(tmp_path)
    dataset = MiniImageNet(tmp_path, "val")
    assert dataset.layout == "csv"
    assert dataset.class_names == ["n01000000", "n02000000"]
    assert dataset.labels.tolist() == [1, 1, 0, 0, 0]
    assert [Path(dataset.source(i)).name for i in range(5)] == [name for name, _ in rows]
    assert dataset.load_batch(range(5), RGB).shape == (5, 3, 32, 32)

    (tmp_path / "images" / "a2.jpg").unlink()
    with pytest.raises(DatasetError, match="1 of the 5 images") as error:
        MiniImageNet(tmp_path, "val")
    assert "a2.jpg" in str(error.value)

    (tmp_path / "test.csv").write_text("path,class\nx.jpg,n0\n")
    with pytest.raises(DatasetError, match="filename,label"):
        MiniImageNet(tmp_path, "test")


def test_mini_imagenet_folder_layout_and_missing_split(tmp_path: Path) -> None:
    _write(tmp_path / "train" / "n02" / "x.jpg", _half_image().convert("RGB"))
    _write(tmp_path / "train" / "n01" / "y.jpg", _half_image().convert("RGB"))
    dataset = MiniImageNet(tmp_path, "train")
    assert dataset.layout == "folder"
    assert dataset.class_names == ["n01", "n02"]
    assert dataset.labels.tolist() == [0, 1]
    with pytest.raises(DatasetError, match=r"val\.csv"):
        MiniImageNet(tmp_path, "val")


# --------------------------------------------------------------------------- registry
def test_registry(tmp_path: Path) -> None:
    assert available_datasets() == [
        "cifar-fs",
        "fc100",
        "folder",
        "mini-imagenet",
        "omniglot",
        "tiered-imagenet",
    ]
    with pytest.raises(ValueError, match="folder, mini-imagenet, omniglot, tiered-imagenet"):
        load_dataset("cifar-100", tmp_path, "test")

    _write(tmp_path / "tree" / "cat" / "a.png")
    _write(tmp_path / "tree" / "train" / "dog" / "b.png")
    _write(tmp_path / "tree" / "train" / "eel" / "c.png")
    # a class folder beside a split folder: one tree of every class, whatever the split
    assert load_dataset("folder", tmp_path / "tree", "train").class_names == ["cat", "train"]
    assert load_dataset("folder", tmp_path / "tree", "test").class_names == ["cat", "train"]

    _write_csv_fixture(tmp_path / "mini")
    mini = load_dataset("Mini-ImageNet", tmp_path / "mini", "val")
    assert isinstance(mini, MiniImageNet) and len(mini) == 5

    omniglot = load_dataset("omniglot", sample_root(), "test")
    assert isinstance(omniglot, Omniglot) and omniglot.num_classes == 156


def _photo(path: Path, size: tuple[int, int], fmt: str) -> Path:
    """A smooth colour gradient with mild noise, saved as ``fmt`` (a stand-in for a photo)."""
    width, height = size
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    pixels = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    pixels = pixels + np.random.default_rng(0).normal(0, 4, pixels.shape)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return path


def test_a_large_jpeg_is_decoded_for_its_target_size(tmp_path: Path) -> None:
    from anyshot.data import open_image

    jpeg = _photo(tmp_path / "big.jpg", (1000, 700), "JPEG")
    full, reduced = open_image(jpeg), open_image(jpeg, 160)
    assert full.size == (1000, 700)
    # 700 // 160 = 4: a quarter scale keeps both sides at or above 160
    assert reduced.size == (250, 175)
    assert open_image(jpeg, 400).size == (1000, 700)  # under twice the target: a full decode
    png = _photo(tmp_path / "big.png", (1000, 700), "PNG")
    assert open_image(png, 160).size == (1000, 700)  # only JPEG has a reduced decode
    rgb = Preprocessing(160, 3)
    gap = (rgb(full) - rgb(reduced)).abs()  # model space: 1/255 of a pixel is 2/255 here
    assert float(gap.mean()) < 2 / 255 and float(gap.max()) < 0.25


def test_a_folder_tree_per_split_and_a_tree_of_every_class(tmp_path: Path) -> None:
    """``ROOT/<split>/<class>/`` only when every sub-folder is a split name; otherwise one tree
    of every class (a class may be called ``test``), whose split is recorded as none."""
    from anyshot.data import load_dataset

    for split, names in (("train", ("a", "b")), ("test", ("c", "d"))):
        for name in names:
            _write(tmp_path / "split" / split / name / "0.png")
    test = load_dataset("folder", tmp_path / "split", "test")
    assert isinstance(test, FolderDataset) and test.class_names == ["c", "d"]
    assert test.split == "test"
    with pytest.raises(DatasetError, match=r"split into test/, train/ and has no val folder"):
        load_dataset("folder", tmp_path / "split", "val")
    for name in ("test", "zebra"):
        _write(tmp_path / "flat" / name / "0.png")
    flat = load_dataset("folder", tmp_path / "flat", "test")
    assert isinstance(flat, FolderDataset) and flat.class_names == ["test", "zebra"]
    assert flat.split is None
    for name in ("train", "test"):  # classes named like splits only: read as splits, and said
        _write(tmp_path / "lookalike" / name / "0.png")
    with pytest.raises(DatasetError, match=r"named like a split, so they are read as splits"):
        load_dataset("folder", tmp_path / "lookalike", "test")
    for split, name in (("Train", "a"), ("Validation", "b"), ("Test", "c")):  # any case
        _write(tmp_path / "cased" / split / name / "0.png")
    assert load_dataset("folder", tmp_path / "cased", "val").class_names == ["b"]
    assert load_dataset("folder", tmp_path / "cased", "Validation").class_names == ["b"]
    _write(tmp_path / "cased" / "val" / "e" / "0.png")  # two folders of one split
    with pytest.raises(DatasetError, match=r"holds Validation/ and val/ for the val split"):
        load_dataset("folder", tmp_path / "cased", "val")
    shutil.rmtree(tmp_path / "cased" / "val")
    _write(tmp_path / "cased" / "extra" / "0.png")  # split folders beside another folder
    with pytest.raises(DatasetError, match=r"split folders \(Test/, Train/, Validation/\) beside"):
        load_dataset("folder", tmp_path / "cased", "val")
