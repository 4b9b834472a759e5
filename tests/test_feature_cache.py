"""Tests of anyshot.feature_cache: features computed once, keyed by model, preprocessing, file."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from anyshot.backbones import Backbone, build_backbone
from anyshot.data import FolderDataset, Preprocessing
from anyshot.errors import ConfigurationError
from anyshot.feature_cache import FeatureCache, file_identity
from anyshot.methods.frozen import frozen_forward


def save(path: Path, value: int, size: tuple[int, int] = (12, 12)) -> Path:
    """A small RGB PNG of noise around ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = np.clip(value + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> FolderDataset:
    for k, cls in enumerate(("a", "b", "c")):
        for i in range(3):
            save(tmp_path / "data" / cls / f"{i}.png", 30 + 70 * k + 7 * i)
    return FolderDataset(tmp_path / "data")


class Counting(nn.Module):
    """Wraps a backbone; counts the images it embeds."""

    preprocessing: Preprocessing
    inner: Backbone

    def __init__(self, inner: Backbone) -> None:
        super().__init__()
        self.inner = inner
        self.preprocessing = inner.preprocessing
        self.arch = inner.arch
        self.embedding = inner.embedding
        self.images = 0

    def config(self) -> dict[str, Any]:
        return self.inner.config()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += int(x.shape[0])
        out: torch.Tensor = self.inner(x)
        return out


def counting_backbone(seed: int = 0) -> Counting:
    torch.manual_seed(seed)
    return Counting(build_backbone("conv4", image_size=16))


def test_hit_is_bitwise_the_frozen_forward_and_computes_nothing(
    dataset: FolderDataset, tmp_path: Path
) -> None:
    model = counting_backbone()
    order = [5, 0, 8, 0, 3]
    reference = frozen_forward(
        model.inner, dataset.load_batch(order, model.preprocessing), batch_size=64
    )
    exact = FeatureCache(tmp_path / "exact", channels_last=False)
    first = exact.features(model, dataset, order, batch_size=2)
    assert torch.equal(first, reference)
    assert model.images == 4 and exact.computed == 4  # the repeated item is embedded once
    # A fresh object reads the shards from disk: nothing recomputed, bitwise the same rows.
    again = FeatureCache(tmp_path / "exact", channels_last=False)
    model.images = 0
    assert torch.equal(again.features(model, dataset, order), reference)
    assert model.images == 0 and again.computed == 0
    # More indices: only the new ones are computed, rows follow the request order.
    both = again.features(model, dataset, [1, 5, 2])
    assert model.images == 2
    assert torch.equal(both[1], reference[0])

    # Channels-last (the default): same values up to rounding, hits are bitwise the misses.
    fast = FeatureCache(tmp_path / "fast", shard_size=3)
    model.images = 0
    computed = fast.features(model, dataset, order)
    torch.testing.assert_close(computed, reference, atol=1e-5, rtol=1e-5)
    assert len(list((tmp_path / "fast").rglob("shard-*.pt"))) == 2  # 4 items, shards of 3
    model.images = 0
    assert torch.equal(FeatureCache(tmp_path / "fast").features(model, dataset, order), computed)
    assert model.images == 0
    assert not list(tmp_path.rglob("*.tmp"))


def test_changes_invalidate(dataset: FolderDataset, tmp_path: Path) -> None:
    model = counting_backbone()
    cache = FeatureCache(tmp_path / "cache")
    items = [0, 1, 2]
    before = cache.features(model, dataset, items)
    assert model.images == 3

    # Changed preprocessing -> a miss for every item.
    model.images = 0
    other = model.preprocessing.with_size(20)
    cache.features(model, dataset, items, preprocessing=other)
    assert model.images == 3

    # A touched file (new mtime, same bytes) -> a hit; a rewritten file -> a miss.
    model.images = 0
    touched = Path(dataset.source(0))
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    save(Path(dataset.source(1)), 99, size=(14, 10))
    after = cache.features(model, dataset, items)
    assert model.images == 1
    assert torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])
    assert not torch.equal(after[1], before[1])

    # Different weights -> a miss; same weights in a new module -> hits.
    model.images = 0
    with torch.no_grad():
        next(model.inner.parameters()).add_(0.01)
    cache.features(model, dataset, items)
    assert model.images == 3
    twin = counting_backbone()
    twin.inner.load_state_dict(model.inner.state_dict())
    cache.features(twin, dataset, items)
    assert twin.images == 0


def test_edge_cases(dataset: FolderDataset, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    model = counting_backbone()
    assert cache.features(model, dataset, []).shape[0] == 0
    assert cache.features(model, dataset, torch.tensor([-1])).shape == (
        1,
        model.inner.embedding_dim,
    )
    with pytest.raises(ConfigurationError, match="preprocessing"):
        cache.features(nn.Flatten(), dataset, [0])
    with pytest.raises(IndexError):
        cache.features(model, dataset, [len(dataset)])
    with pytest.raises(ConfigurationError):
        FeatureCache(tmp_path, shard_size=0)
    assert file_identity(str(tmp_path / "nope.zip") + ":x/y.png@rot000") == (None, None)
    archive = tmp_path / "a.zip"
    archive.write_bytes(b"12345")
    assert file_identity(f"{archive}:x/y.png@rot090")[0] == 5


def test_bfloat16_is_close_keyed_apart_and_leaves_the_backbone(
    dataset: FolderDataset, tmp_path: Path
) -> None:
    model = counting_backbone()
    items = [0, 4, 8]
    exact = FeatureCache(tmp_path / "c").features(model, dataset, items)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    half = FeatureCache(tmp_path / "c", dtype="bfloat16")
    rows = half.features(model, dataset, items, batch_size=2)
    assert half.computed == 3  # float32 rows never answer a bfloat16 request
    assert rows.dtype == torch.float32 and rows.shape == exact.shape
    assert not torch.equal(rows, exact)
    assert torch.nn.functional.cosine_similarity(rows, exact).min() > 0.99
    # The caller's backbone: same dtype, values and memory format as before.
    for name, value in model.state_dict().items():
        assert value.dtype == before[name].dtype and torch.equal(value, before[name])
        assert value.is_contiguous()

    # Hits from disk are bitwise the bfloat16 misses; float32 rows are still served as before.
    again = FeatureCache(tmp_path / "c", dtype="bfloat16")
    assert torch.equal(again.features(model, dataset, items), rows)
    assert again.computed == 0
    plain = FeatureCache(tmp_path / "c", dtype="float32")
    assert torch.equal(plain.features(model, dataset, items), exact)
    assert plain.computed == 0

    with pytest.raises(ConfigurationError, match="dtype"):
        FeatureCache(tmp_path / "c", dtype="float16")


def test_keys_name_the_content_and_float32_keys_have_no_dtype() -> None:
    import hashlib
    import json

    from anyshot.feature_cache import _item_key

    def key(record: dict[str, object]) -> str:
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()

    plain = {"model": "m", "source": "/no/such/file.png", "channels_last": True}
    assert _item_key("m", "/no/such/file.png", True) == key(plain)
    assert _item_key("m", "/no/such/file.png", True, "float32") == key(plain)
    assert _item_key("m", "/no/such/file.png", True, "bfloat16") != key(plain)
    assert _item_key("m", "/no/such/file.png", True, freeze=True) != key(plain)
    content = {"model": "m", "content": "ab", "part": ":x.png", "channels_last": True}
    for source in ("/a/b.zip:x.png", "/elsewhere/b.zip:x.png"):  # the path is not in the key
        assert _item_key("m", source, True, content=("ab", ":x.png")) == key(content)


def test_a_copied_or_touched_file_keeps_its_rows_and_is_read_once(
    dataset: FolderDataset, tmp_path: Path
) -> None:
    """Rows are keyed by the files' bytes: a copy of the folder elsewhere, or touched files,
    hit; each file is hashed once, then known by path, size and time (in the folder too)."""
    model = counting_backbone()
    cache = FeatureCache(tmp_path / "cache")
    items = list(range(len(dataset)))
    before = cache.features(model, dataset, items)
    assert cache._files.hashed == len(dataset)
    again = FeatureCache(tmp_path / "cache")  # a later process: digests read from the folder
    model.images = 0
    assert torch.equal(again.features(model, dataset, items), before)
    assert model.images == 0 and again._files.hashed == 0
    copy = tmp_path / "copy"
    shutil.copytree(Path(dataset.source(0)).parents[1], copy)
    moved = FolderDataset(copy)
    assert [moved.source(i) for i in items] != [dataset.source(i) for i in items]
    assert torch.equal(again.features(model, moved, items), before)
    assert model.images == 0 and again._files.hashed == len(dataset)  # new paths: read once
    assert (tmp_path / "cache" / "files").is_dir()


@pytest.mark.skipif(sys.platform == "win32", reason="st_ctime is the creation time on Windows")
def test_a_file_rewritten_with_its_old_size_and_time_is_read_again(tmp_path: Path) -> None:
    """``cp --preserve=timestamps``, rsync, tar and unzip restore the modification time: the
    change time and the inode still tell new content from old, in a later process too."""
    for name, value in (("a/x.bmp", 10), ("a/y.bmp", 120), ("b/z.bmp", 240)):
        save(tmp_path / "data" / name, value)  # uncompressed: every file the same size
    dataset = FolderDataset(tmp_path / "data")
    x, y, z = (Path(dataset.source(i)) for i in range(3))
    assert x.stat().st_size == y.stat().st_size == z.stat().st_size
    model = counting_backbone()
    before = FeatureCache(tmp_path / "cache").features(model, dataset, [0, 1, 2])
    stat = x.stat()
    time.sleep(0.05)  # past the kernel's timestamp granularity
    shutil.copyfile(y, tmp_path / "new.bmp")
    os.replace(tmp_path / "new.bmp", x)  # y's bytes under x's name: a new inode
    os.utime(x, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and x's old time
    model.images = 0
    after = FeatureCache(tmp_path / "cache").features(model, dataset, [0])
    assert model.images == 0 and torch.equal(after[0], before[1])  # y's row, not x's
    stat = x.stat()
    time.sleep(0.05)
    x.write_bytes(z.read_bytes())  # z's bytes written in place: the same inode
    os.utime(x, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (x.stat().st_ino, x.stat().st_size, x.stat().st_mtime_ns) == (
        stat.st_ino, stat.st_size, stat.st_mtime_ns,
    )  # fmt: skip
    after = FeatureCache(tmp_path / "cache").features(model, dataset, [0])
    assert model.images == 0 and torch.equal(after[0], before[2])  # z's row


def test_freeze_is_close_keyed_apart_and_says_when_it_cannot_trace(
    dataset: FolderDataset, tmp_path: Path
) -> None:
    model = counting_backbone()
    items = [0, 4, 8, 2, 6]
    exact = FeatureCache(tmp_path / "c").features(model, dataset, items)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    frozen = FeatureCache(tmp_path / "c", freeze=True)
    rows = frozen.features(model, dataset, items, batch_size=2)  # traced on 2, run on 2, 2, 1
    assert frozen.computed == 5  # eager rows never answer a frozen request
    torch.testing.assert_close(rows, exact, atol=1e-4, rtol=1e-4)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]) and value.is_contiguous()
    again = FeatureCache(tmp_path / "c", freeze=True)
    assert torch.equal(again.features(model, dataset, items), rows)
    assert again.computed == 0

    both = FeatureCache(tmp_path / "c", freeze=True, dtype="bfloat16")
    assert (
        torch.nn.functional.cosine_similarity(both.features(model, dataset, items), exact).min()
        > 0.99
    )
    assert both.computed == 5

    class Untraceable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.preprocessing = model.preprocessing
            self.inner = model.inner

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"features": self.inner(x)}

    with pytest.raises(ConfigurationError, match="freeze=False"):
        FeatureCache(tmp_path / "d", freeze=True).features(Untraceable(), dataset, [0])


def test_fastest_dtype_reads_the_cpu_flags(tmp_path: Path) -> None:
    from anyshot.feature_cache import fastest_dtype

    with_bf16 = tmp_path / "bf16"
    with_bf16.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_bf16\n")
    without = tmp_path / "plain"
    without.write_text("processor : 0\nflags : fpu avx2 avx512f\n")
    assert fastest_dtype(cpuinfo=str(with_bf16)) == "bfloat16"
    assert fastest_dtype(cpuinfo=str(without)) == "float32"
    assert fastest_dtype(cpuinfo=str(tmp_path / "missing")) == "float32"
    assert fastest_dtype("cuda", cpuinfo=str(with_bf16)) == "float32"


def test_relative_and_absolute_roots_share_rows(
    dataset: FolderDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyshot.feature_cache import canonical_source

    backbone = counting_backbone()
    cache = FeatureCache(tmp_path / "cache")
    absolute = cache.features(backbone, dataset, range(len(dataset)))
    assert backbone.images == len(dataset)
    monkeypatch.chdir(tmp_path)
    relative = FolderDataset(Path("data"))
    assert not relative.source(0).startswith("/")
    again = FeatureCache(tmp_path / "cache").features(backbone, relative, range(len(relative)))
    assert backbone.images == len(dataset)  # every row was a hit
    torch.testing.assert_close(again, absolute, atol=0, rtol=0)
    archive = tmp_path / "a.zip"
    archive.write_bytes(b"")
    assert canonical_source("a.zip:x/y.png@rot090") == f"{archive.resolve()}:x/y.png@rot090"
    assert canonical_source("/no/such/file.png") == "/no/such/file.png"


class Configured(nn.Module):
    """A module with a ``config()`` holding a ``pretrained`` flag, as EfficientNet-Lite0's."""

    def __init__(self, pretrained: bool, seed: int = 0) -> None:
        super().__init__()
        self.pretrained = pretrained
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.linear = nn.Linear(4, 3)

    def config(self) -> dict[str, Any]:
        return {"pretrained": self.pretrained, "channels": 3}


def test_digest_ignores_where_the_weights_came_from() -> None:
    """A backbone loaded from a model file (pretrained=False, weights stored) shares the digest
    of the ImageNet one it was saved from; other weights still change it."""
    from anyshot.feature_cache import model_digest

    prep = Preprocessing(image_size=8, channels=3)
    assert model_digest(Configured(True), prep) == model_digest(Configured(False), prep)
    assert model_digest(Configured(True), prep) != model_digest(Configured(True, seed=1), prep)


def test_a_damaged_shard_is_skipped_with_a_warning_and_its_images_embedded_again(
    dataset: FolderDataset, tmp_path: Path
) -> None:
    model = counting_backbone()
    items = list(range(len(dataset)))
    before = FeatureCache(tmp_path / "cache").features(model, dataset, items)
    shards = sorted((tmp_path / "cache").rglob("shard-*.pt"))
    assert shards
    for shard in shards:  # cut short, as by a full disk
        shard.write_bytes(shard.read_bytes()[:200])
    model.images = 0
    with pytest.warns(RuntimeWarning, match="ignoring the unreadable file .*shard-"):
        again = FeatureCache(tmp_path / "cache").features(model, dataset, items)
    assert model.images == len(dataset)
    torch.testing.assert_close(again, before, rtol=0, atol=0)
    model.images = 0  # the new shard serves the next run (which warns again: delete it)
    with pytest.warns(RuntimeWarning, match="ignoring the unreadable file"):
        third = FeatureCache(tmp_path / "cache").features(model, dataset, items)
    assert torch.equal(third, before) and model.images == 0
