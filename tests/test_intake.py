"""Image intake: folders of a practitioner's images, every bad input found, counted and named.

Everything runs on tiny images generated in ``tmp_path`` with the conv-4 backbone at 16 px.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anyshot.cli import main
from anyshot.data import intake
from anyshot.data.images import Preprocessing
from anyshot.data.intake import IntakeReport, scan_images, scan_support
from anyshot.embedding import ImageList, Unreadable, embed_images
from anyshot.errors import DatasetError, EmptyClassError, ImageReadError

SIZE = 16
CONV4 = ["--backbone", "conv4", "--image-size", str(SIZE), "--quiet"]


def save(
    path: Path, value: int = 128, *, mode: str = "RGB", size: tuple[int, int] = (12, 12)
) -> Path:
    """A small image file: noise around ``value`` in ``mode`` (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value + len(path.name))
    pixels = np.clip(value + rng.normal(0, 10, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return path


def support_tree(root: Path) -> Path:
    """Two classes: ``cat`` (2 images, one nested) and ``dog`` (2 images)."""
    save(root / "cat" / "a.png", 40)
    save(root / "cat" / "deep" / "er" / "b.jpg", 50)
    save(root / "dog" / "c.png", 200)
    save(root / "dog" / "d.png", 210)
    return root


def huge_png(path: Path, side: int = 20_000) -> Path:
    """A tiny file whose PNG header claims ``side x side`` pixels (a decompression bomb)."""
    save(path, size=(1, 1))
    data = bytearray(path.read_bytes())
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", side, side)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def kinds(report: IntakeReport) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in report.skipped:
        found.setdefault(item.kind, []).append(os.path.basename(item.path))
    return found


# --- discovery ----------------------------------------------------------------------------
def test_support_folder_any_depth_sorted_and_counted(tmp_path: Path) -> None:
    files = scan_support(support_tree(tmp_path / "s"))
    assert files.classes == ["cat", "dog"]
    assert files.labels == ["cat", "cat", "dog", "dog"]
    assert [Path(p).name for p in files.paths] == ["a.png", "b.jpg", "c.png", "d.png"]
    assert files.report.class_counts == {"cat": 2, "dog": 2}
    assert files.report.images == 4 and not files.report.skipped


def test_hidden_non_image_loose_and_special_files_are_skipped_and_counted(tmp_path: Path) -> None:
    root = support_tree(tmp_path / "s")
    save(root / "cat" / ".hidden.png")
    save(root / ".thumbnails" / "x.png")
    save(root / "dog" / ".cache" / "y.png")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "cat" / "README").write_text("no extension")
    save(root / "loose.png")
    os.mkfifo(root / "dog" / "pipe.png")
    files = scan_support(root)
    assert files.report.class_counts == {"cat": 2, "dog": 2}
    assert kinds(files.report) == {
        "hidden": [".thumbnails", ".hidden.png", ".cache"],
        "not-image": ["README", "notes.txt"],
        "outside-class": ["loose.png"],
        "special": ["pipe.png"],
    }
    assert files.report.skipped_by_kind() == {
        "hidden": 3, "not-image": 2, "outside-class": 1, "special": 1
    }  # fmt: skip
    text = "\n".join(files.report.summary_lines("support"))
    assert "skipped 7" in text and "notes.txt" in text and "loose.png" in text
    assert IntakeReport(["q"], images=1).summary_lines("query") == ["query: 1 image"]


def test_jpeg_under_every_extension_mac_zip_folders_and_phone_formats(tmp_path: Path) -> None:
    """``.jfif`` / ``.jpe`` (browsers, messaging apps) are JPEGs; a zip made on a Mac brings a
    ``__MACOSX`` folder that is no class; a HEIC photo is named as what it is."""
    root = support_tree(tmp_path / "s")
    save(root / "cat" / "web.jfif", 90)
    save(root / "dog" / "old.jpe", 200)
    save(root / "__MACOSX" / "cat" / "._a.png")
    (root / "dog" / "phone.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    files = scan_support(root)
    assert files.classes == ["cat", "dog"]
    assert files.report.class_counts == {"cat": 3, "dog": 3}
    assert kinds(files.report) == {"hidden": ["__MACOSX"], "not-image": ["phone.HEIC"]}
    (heic,) = [item for item in files.report.skipped if item.kind == "not-image"]
    assert "does not read (.HEIC): convert it to JPEG" in heic.reason
    rows, kept = embed_images(
        torch.nn.Flatten(), ImageList(files.paths, Preprocessing(SIZE, 3)), batch_size=8
    )
    assert kept == list(range(6)) and rows.shape == (6, 3 * SIZE * SIZE)


def test_a_support_folder_given_one_level_too_high_is_pointed_out(tmp_path: Path) -> None:
    for folder in ("support/cat", "query"):
        save(tmp_path / "photos" / folder / "a.png")
    files = scan_support(tmp_path / "photos")
    assert files.classes == ["query", "support"]  # still used as given
    (text,) = files.report.warnings
    assert "named query, support" in text and "folder above the support folder" in text
    assert any("warning: class folder(s)" in line for line in files.report.summary_lines("s"))
    assert not scan_support(support_tree(tmp_path / "s")).report.warnings
    for name in ("bus", "train"):  # one class named like a set of images: a real class
        save(tmp_path / "vehicles" / name / "a.png")
    assert not scan_support(tmp_path / "vehicles").report.warnings


def test_symlinks_followed_broken_reported_cycles_cut(tmp_path: Path) -> None:
    root = support_tree(tmp_path / "s")
    outside = save(tmp_path / "elsewhere" / "e.png", 45)
    (root / "cat" / "linked.png").symlink_to(outside)
    (root / "cat" / "gone.png").symlink_to(tmp_path / "missing.png")
    (root / "dog" / "loop").symlink_to(root / "dog")  # a directory cycle
    (root / "dog" / "self.png").symlink_to(root / "dog" / "self.png")  # a link loop
    files = scan_support(root)
    assert files.report.class_counts == {"cat": 3, "dog": 2}
    assert str(root / "cat" / "linked.png") in files.paths
    found = kinds(files.report)
    assert found["broken-link"] == ["gone.png"]
    assert found["link-cycle"] == ["self.png"]
    assert found["folder-link"] == ["loop"]  # back into the support folder: not walked


def test_a_link_into_another_class_folder_does_not_move_its_images(tmp_path: Path) -> None:
    """cat/looks_like -> dog/pups would give dog's pups the label cat (cat sorts first); the
    link is listed instead, and a linked folder outside the support folder is walked."""
    root = support_tree(tmp_path / "s")
    pup = save(root / "dog" / "pups" / "p.png", 60)
    (root / "cat" / "looks_like").symlink_to(root / "dog" / "pups")
    extra = save(tmp_path / "more_cats" / "m.png", 70)
    (root / "cat" / "more").symlink_to(tmp_path / "more_cats")
    files = scan_support(root)
    labels = dict(zip(files.paths, files.labels, strict=True))
    assert labels[str(pup)] == "dog"
    assert labels[str(root / "cat" / "more" / extra.name)] == "cat"
    (skipped,) = [s for s in files.report.skipped if s.kind == "folder-link"]
    assert skipped.path == str(root / "cat" / "looks_like") and "'dog'" in skipped.reason


def test_query_folders_and_files(tmp_path: Path) -> None:
    save(tmp_path / "q" / "b" / "2.png")
    save(tmp_path / "q" / "1.jpg")
    (tmp_path / "q" / "x.csv").write_text("a,b")
    single = save(tmp_path / "other.bmp")
    files = scan_images([tmp_path / "q", single])
    assert files.paths == sorted(
        [str(tmp_path / "q" / "1.jpg"), str(tmp_path / "q" / "b" / "2.png"), str(single)]
    )
    assert kinds(files.report) == {"not-image": ["x.csv"]}
    with pytest.raises(DatasetError, match="does not exist"):
        scan_images([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files found"):
        scan_images(tmp_path / "empty")


# --- refusals -----------------------------------------------------------------------------
def test_empty_class_folder_is_refused_by_name(tmp_path: Path) -> None:
    root = support_tree(tmp_path / "s")
    (root / "bird").mkdir()
    (root / "bird" / "info.txt").write_text("x")
    with pytest.raises(EmptyClassError) as error:
        scan_support(root)
    message = str(error.value)
    assert str(root / "bird") in message and "add images" in message and "remove" in message
    assert "1 not an image file" in message


def test_single_class_is_refused(tmp_path: Path) -> None:
    save(tmp_path / "s" / "only" / "a.png")
    with pytest.raises(DatasetError, match="at least 2 classes") as error:
        scan_support(tmp_path / "s")
    assert "'only'" in str(error.value)


def test_missing_or_flat_support_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_support(tmp_path / "nope")
    save(tmp_path / "flat" / "a.png")
    with pytest.raises(DatasetError, match="no class folders"):
        scan_support(tmp_path / "flat")


def test_duplicates_across_classes_are_reported_with_files_and_classes(tmp_path: Path) -> None:
    root = support_tree(tmp_path / "s")
    (root / "dog" / "copy.png").write_bytes((root / "cat" / "a.png").read_bytes())
    (root / "cat" / "same-class-copy.png").write_bytes((root / "cat" / "a.png").read_bytes())
    files = scan_support(root)
    assert len(files.report.duplicates) == 1
    duplicate = files.report.duplicates[0]
    assert {Path(p).name for p in duplicate.paths} == {"a.png", "same-class-copy.png", "copy.png"}
    assert set(duplicate.classes) == {"cat", "dog"}
    assert files.report.class_counts == {"cat": 3, "dog": 3}  # still used: a warning only
    text = "\n".join(files.report.summary_lines("support"))
    assert "warning: identical files in different classes" in text and "(class dog)" in text


def test_duplicates_within_one_class_and_among_query_images_at_any_depth(tmp_path: Path) -> None:
    root = support_tree(tmp_path / "s")
    (root / "dog" / "again" / "c-copy.png").parent.mkdir()
    (root / "dog" / "again" / "c-copy.png").write_bytes((root / "dog" / "c.png").read_bytes())
    (duplicate,) = scan_support(root).report.duplicates
    assert duplicate.classes == ("dog", "dog") and duplicate.where() == "twice in class dog"
    query = tmp_path / "q"
    first = save(query / "x.png", 90)
    (query / "deep" / "er").mkdir(parents=True)
    (query / "deep" / "er" / "y.png").write_bytes(first.read_bytes())
    save(query / "z.png", 120)
    files = scan_images(query)
    (duplicate,) = files.report.duplicates
    assert duplicate.paths == (str(query / "deep" / "er" / "y.png"), str(query / "x.png"))
    assert duplicate.classes == ("", "")
    assert files.paths == sorted(str(p) for p in query.rglob("*.png"))  # all still used
    text = "\n".join(files.report.summary_lines("query"))
    assert "warning: identical files among the unlabelled images" in text and "y.png" in text


def test_an_image_in_both_support_and_query_is_reported(tmp_path: Path) -> None:
    support = scan_support(support_tree(tmp_path / "s"))
    query = tmp_path / "q"
    (query / "sub").mkdir(parents=True)
    (query / "sub" / "same.png").write_bytes((tmp_path / "s" / "cat" / "a.png").read_bytes())
    save(query / "other.png", 99)
    images = scan_images(query)
    assert images.report.duplicates == []
    intake.report_shared_files(support, images)
    (duplicate,) = images.report.duplicates
    copy, original = str(query / "sub" / "same.png"), str(tmp_path / "s" / "cat" / "a.png")
    assert duplicate.paths == (copy, original)  # sorted by path
    assert duplicate.classes == ("", "cat")
    text = "\n".join(images.report.summary_lines("query"))
    assert "identical files in the support and among the unlabelled images" in text
    assert "a.png (class cat)" in text


def test_classify_summary_lists_a_query_image_copied_from_the_support(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    support = support_tree(tmp_path / "s")
    query = tmp_path / "q"
    save(query / "n.png", 100)
    (query / "a" / "b").mkdir(parents=True)
    (query / "a" / "b" / "copy.jpg").write_bytes(
        (support / "cat" / "deep" / "er" / "b.jpg").read_bytes()
    )
    argv = [
        "classify",
        "--support",
        str(support),
        "--query",
        str(query),
        "--method",
        "support-init",
    ]
    assert main([*argv, *CONV4[:-1]]) == 0
    err = capsys.readouterr().err
    assert "identical files in the support and among the unlabelled images" in err
    assert "copy.jpg" in err and "b.jpg (class cat)" in err


def deny(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> None:
    """Make ``paths`` unreadable: chmod 000, and (root reads anything) refuse them in ``os``."""
    denied = {os.fspath(p) for p in paths}
    for path in paths:
        path.chmod(0)
    if os.geteuid() != 0:
        return
    access, scandir = os.access, os.scandir

    def fake_access(path: object, mode: int, **kwargs: object) -> bool:
        return os.fspath(path) not in denied and access(path, mode)  # type: ignore[arg-type]

    def fake_scandir(path: object = ".") -> object:
        if os.fspath(path) in denied:  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", os.fspath(path))  # type: ignore[arg-type]
        return scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(intake.os, "access", fake_access)
    monkeypatch.setattr(intake.os, "scandir", fake_scandir)


def test_unreadable_files_and_folders_are_reported_with_their_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = support_tree(tmp_path / "s")
    secret = save(root / "cat" / "secret.png")
    locked = root / "dog" / "locked"
    save(locked / "x.png")
    deny(monkeypatch, secret, locked)
    try:
        files = scan_support(root)
        assert files.report.class_counts == {"cat": 2, "dog": 2}
        assert sorted(kinds(files.report)["permission"]) == ["locked", "secret.png"]
        assert any("permission denied" in s.reason for s in files.report.skipped)
        with pytest.raises(ImageReadError, match=r"secret\.png"):
            scan_support(root, strict=True)
    finally:
        secret.chmod(0o644)
        locked.chmod(0o755)


# --- decoding -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "CMYK", "P", "1", "I;16"])
def test_every_image_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = tmp_path / f"image{suffix}"
    if mode == "I;16":
        ramp = np.linspace(0, 65535, 12 * 12).reshape(12, 12).astype(np.uint16)
        Image.fromarray(ramp).save(path)
        assert Image.open(path).mode.startswith("I")
    else:
        save(path, mode=mode)
    tensor = ImageList([path], Preprocessing(SIZE, 3))[0]
    assert tensor.shape == (3, SIZE, SIZE) and torch.isfinite(tensor).all()
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[:, :8] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 3  # rotate 180 degrees
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes())
    tensor = ImageList([path], Preprocessing(SIZE, 3))[0]
    assert tensor[:, :, SIZE // 2 :].mean() > 0.5 > tensor[:, :, : SIZE // 2].mean()  # now right


def test_corrupt_truncated_and_huge_images_are_skipped_or_fatal(tmp_path: Path) -> None:
    good = save(tmp_path / "good.png")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not a jpeg")
    full = save(tmp_path / "full.jpg", size=(64, 64)).read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(full[: len(full) // 2])
    huge = huge_png(tmp_path / "huge.png")
    images = ImageList([good, garbage, truncated, huge], Preprocessing(SIZE, 3))
    network = torch.nn.Flatten()
    problems: list[Unreadable] = []
    embeddings, kept = embed_images(network, images, batch_size=2, on_unreadable=problems.append)
    assert kept == [0] and embeddings.shape == (1, 3 * SIZE * SIZE)
    assert [(Path(p.source).name, p.kind) for p in problems] == [
        ("garbage.jpg", "corrupt"), ("truncated.jpg", "corrupt"), ("huge.png", "too-large")
    ]  # fmt: skip
    assert "BytesIO" not in problems[0].reason
    assert "too large" in problems[2].reason and "huge.png" in problems[2].reason
    with pytest.raises(ImageReadError, match=r"garbage\.jpg"):
        embed_images(network, images, batch_size=2)


def test_cli_reports_bad_images_and_strict_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = support_tree(tmp_path / "s")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    save(tmp_path / "q" / "1.png", 45)
    huge_png(tmp_path / "q" / "huge.png")
    output = tmp_path / "out.json"
    argv = ["classify", "--support", str(root), "--query", str(tmp_path / "q")]
    assert main([*argv, "--output", str(output), *CONV4]) == 0
    summary = json.loads(output.read_text())["summary"]
    assert summary["support"]["class_counts"] == {"cat": 2, "dog": 2}
    assert summary["support"]["skipped_by_kind"] == {"corrupt": 1}
    assert summary["query"]["skipped"][0]["kind"] == "too-large"
    assert summary["query"]["images"] == 1
    capsys.readouterr()
    assert main([*argv, "--strict", *CONV4]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anyshot: error: ") and "broken.png" in err and "Traceback" not in err


def test_cli_refusals_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save(tmp_path / "one" / "a" / "x.png")
    save(tmp_path / "q" / "y.png")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    save(tmp_path / "empty" / "b" / "x.png")
    cases = {
        "one": "at least 2 classes",
        "empty": "add images",
        "missing": "does not exist",
    }
    for folder, expected in cases.items():
        status = main(["fit", "--support", str(tmp_path / folder), "--output",
                       str(tmp_path / "m.pt"), *CONV4])  # fmt: skip
        err = capsys.readouterr().err
        assert status == 2 and expected in err and err.startswith("anyshot: error:"), err
    assert not (tmp_path / "m.pt").exists()
