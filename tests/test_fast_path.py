"""The practitioner's fast path: the feature cache of classify / fit / predict / suggest and of
FewShotClassifier (hits, invalidation, opt-out, in-process reuse), bfloat16 against float32, and
the thread defaults. Conv-4 at 16 px on tiny generated images; ``$XDG_CACHE_HOME`` is a
temporary folder in every test (conftest)."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from anyshot import feature_cache
from anyshot.backbones import Backbone, build_backbone
from anyshot.classifier import FewShotClassifier
from anyshot.cli import main
from anyshot.errors import ConfigurationError
from anyshot.feature_cache import FeatureCache, default_cache_dir
from anyshot.methods import FineTuning, SupportBasedInit
from anyshot.threads import free_cores, torch_threads
from conftest import noisy_image, support_and_query

SIZE = 16
CONV4 = ["--backbone", "conv4", "--image-size", str(SIZE), "--quiet", "--method", "support-init"]
COLOURS = {"blue": (30, 60, 220), "green": (40, 200, 60), "red": (220, 40, 30)}


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """``support/<colour>/`` 2 images each, ``query/`` 2 per colour (12 images in all)."""
    return support_and_query(tmp_path, COLOURS)


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Images the network embeds from now on (the FeatureCache's loop, counted per batch)."""
    counts: list[int] = []
    original = feature_cache.embedding_batches

    def counting(*args: Any, **kwargs: Any) -> Iterator[tuple[list[int], torch.Tensor]]:
        for positions, rows in original(*args, **kwargs):
            counts.append(len(positions))
            yield positions, rows

    monkeypatch.setattr(feature_cache, "embedding_batches", counting)
    return counts


def shards(folder: Path) -> set[Path]:
    return set(folder.rglob("shard-*.pt"))


def paths_and_labels(support: Path) -> tuple[list[str], list[str]]:
    paths = sorted(support.rglob("*.png"))
    return [str(p) for p in paths], [p.parent.name for p in paths]


def backbone() -> Backbone:
    torch.manual_seed(0)
    return build_backbone("conv4", image_size=SIZE)


def support_images(folders: tuple[Path, Path]) -> tuple[Backbone, Any]:
    """:func:`backbone` and the 6 support images as its :class:`~anyshot.embedding.ImageList`."""
    from anyshot.embedding import ImageList

    paths, _ = paths_and_labels(folders[0])
    network = backbone()
    return network, ImageList(paths, network.preprocessing)


# --- the commands -------------------------------------------------------------------------
def test_second_classify_embeds_nothing_and_answers_the_same(
    folders: tuple[Path, Path], tmp_path: Path, embedded: list[int]
) -> None:
    support, query = folders
    cache = tmp_path / "cache"
    argv = ["classify", "--support", str(support), "--query", str(query), *CONV4,
            "--cache-dir", str(cache)]  # fmt: skip
    assert main([*argv, "--output", str(tmp_path / "a.csv")]) == 0
    assert sum(embedded) == 12
    written = shards(cache)
    assert written
    assert main([*argv, "--output", str(tmp_path / "b.csv")]) == 0
    assert sum(embedded) == 12  # nothing embedded the second time
    assert shards(cache) == written  # and nothing written
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_changed_file_and_other_model_are_embedded_again(
    folders: tuple[Path, Path], tmp_path: Path, embedded: list[int]
) -> None:
    support, query = folders
    cache, output = str(tmp_path / "cache"), str(tmp_path / "p.csv")
    argv = ["classify", "--support", str(support), "--query", str(query), *CONV4,
            "--cache-dir", cache, "--output", output]  # fmt: skip
    assert main(argv) == 0
    first = sum(embedded)
    changed = query / "red-0.png"
    noisy_image(changed, COLOURS["blue"], 999)  # new content (and size / modification time)
    os.utime(changed, ns=(1, 1))  # a different mtime even on a coarse clock
    assert main(argv) == 0
    assert sum(embedded) == first + 1  # only the rewritten file
    assert "red-0.png,blue" in (tmp_path / "p.csv").read_text()
    assert main([*argv, "--seed", "1"]) == 0  # conv-4 initialised differently: other weights
    assert sum(embedded) == first + 1 + 12


def test_no_cache_writes_nothing_and_default_folder_is_the_user_cache(
    folders: tuple[Path, Path],
    tmp_path: Path,
    private_cache_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    support, query = folders
    argv = ["classify", "--support", str(support), "--query", str(query), *CONV4]
    assert default_cache_dir() == private_cache_home / "anyshot" / "features"
    assert main([*argv, "--no-cache"]) == 0
    assert not any(private_cache_home.iterdir())
    assert main(argv) == 0
    stored = [torch.load(p, weights_only=True)["keys"] for p in shards(default_cache_dir())]
    assert sum(len(keys) for keys in stored) == 12  # support and query, one row each
    assert main([*argv, "--no-cache", "--cache-dir", str(tmp_path / "c")]) == 2
    assert "contradict" in capsys.readouterr().err


def test_predict_and_suggest_after_fit_embed_only_new_images(
    folders: tuple[Path, Path], tmp_path: Path, embedded: list[int]
) -> None:
    support, query = folders
    model = tmp_path / "model.pt"
    assert main(["fit", "--support", str(support), "--unlabeled", str(query), *CONV4,
                 "--output", str(model)]) == 0  # fmt: skip
    assert sum(embedded) == 12
    extra = noisy_image(tmp_path / "extra.png", COLOURS["red"], 7)
    assert main(["predict", "--model", str(model), str(query), str(extra), "--quiet",
                 "--output", str(tmp_path / "p.csv")]) == 0  # fmt: skip
    assert sum(embedded) == 13  # the one new image
    assert main(["suggest", "--model", str(model), "--unlabeled", str(query), "--quiet",
                 "--output", str(tmp_path / "s.csv")]) == 0  # fmt: skip
    assert sum(embedded) == 13


# --- the estimator ------------------------------------------------------------------------
def test_predict_then_predict_proba_embeds_once_in_process(
    folders: tuple[Path, Path], tmp_path: Path, embedded: list[int], private_cache_home: Path
) -> None:
    support, query = folders
    paths, labels = paths_and_labels(support)
    model = FewShotClassifier(backbone(), SupportBasedInit(), cache_dir=False)
    model.fit(paths, labels)
    assert sum(embedded) == 6
    new = [str(p) for p in sorted(query.iterdir())]
    labels_first = model.predict(new)
    probabilities = model.predict_proba(new)
    assert sum(embedded) == 12  # the 6 query images once
    assert [model.classes_[int(k)] for k in probabilities.argmax(1)] == labels_first
    assert not any(private_cache_home.iterdir())  # cache_dir=False: nothing on disk
    # In-memory images have no file identity: embedded every time, never stored.
    tensors = torch.randn(3, 3, SIZE, SIZE)
    model.predict_proba(tensors)
    model.predict_proba(tensors)
    assert sum(embedded) == 18


def test_params_follow_the_sklearn_convention(tmp_path: Path) -> None:
    model = FewShotClassifier("conv4", cache_dir=tmp_path, precision="float32")
    params = model.get_params()
    assert params["cache_dir"] == tmp_path and params["precision"] == "float32"
    assert params["channels_last"] is True and params["backbone"] == "conv4"
    assert FewShotClassifier(**params).get_params() == params
    assert model.set_params(precision="bfloat16", cache_dir=False) is model
    assert model.precision == "bfloat16" and model.cache_dir is False
    assert not any(name.endswith("_") for name in vars(model) if not name.startswith("_"))
    with pytest.raises(ConfigurationError, match="unknown parameters"):
        model.set_params(colour="red")
    with pytest.raises(ConfigurationError, match="precision"):
        FewShotClassifier(backbone(), precision="float16").fit(
            torch.randn(2, 3, SIZE, SIZE), ["a", "b"]
        )


def test_bfloat16_predictions_agree_with_float32(folders: tuple[Path, Path]) -> None:
    """bfloat16 runs on any CPU (emulated where there are no native instructions)."""
    support, query = folders
    paths, labels = paths_and_labels(support)
    new = [str(p) for p in sorted(query.iterdir())]
    runs = {}
    for precision in ("float32", "bfloat16"):
        model = FewShotClassifier(backbone(), SupportBasedInit(), precision=precision)
        runs[precision] = model.fit(paths, labels).predict_proba(new)
    assert not np.array_equal(runs["float32"], runs["bfloat16"])  # bfloat16 really ran
    np.testing.assert_allclose(runs["bfloat16"], runs["float32"], atol=0.05)
    assert (runs["bfloat16"].argmax(1) == runs["float32"].argmax(1)).all()


def test_fine_tuned_network_never_reads_the_frozen_rows(
    folders: tuple[Path, Path], tmp_path: Path, embedded: list[int]
) -> None:
    support, query = folders
    paths, labels = paths_and_labels(support)
    new = [str(p) for p in sorted(query.iterdir())]
    cache = tmp_path / "cache"
    frozen = FewShotClassifier(backbone(), SupportBasedInit(), cache_dir=cache)
    frozen.fit(paths, labels).predict_proba(new)  # rows of all 12 files, frozen network
    before = sum(embedded)
    tuned = FineTuning(scope="last", epochs=2, batch_size=4)
    model = FewShotClassifier(backbone(), tuned, cache_dir=cache).fit(paths, labels)
    cached = model.predict_proba(paths + new)
    assert sum(embedded) == before + 12  # nothing read from the frozen network's rows
    assert not np.allclose(cached[: len(paths)], frozen.predict_proba(paths), atol=1e-3)
    model.set_params(cache_dir=False)  # new settings: a new (in-memory) cache, all computed
    np.testing.assert_allclose(model.predict_proba(paths + new), cached, atol=1e-6)
    assert sum(embedded) == before + 24


def test_unreadable_positions_are_those_of_the_images_given(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    support, _ = folders
    paths, labels = paths_and_labels(support)
    model = FewShotClassifier(backbone(), SupportBasedInit(), cache_dir=tmp_path / "c")
    model.fit(paths, labels)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    problems: list[Any] = []
    rows = model.predict_proba([paths[0], str(bad), paths[1]], on_unreadable=problems.append)
    assert [p.index for p in problems] == [1] and rows.shape == (2, 3)
    np.testing.assert_allclose(rows, model.predict_proba([paths[0], paths[1]]))


def test_feature_cache_keeps_only_the_rows_asked_for(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    network, images = support_images(folders)
    full, kept = FeatureCache(tmp_path / "c").embed(network, images)
    assert kept == list(range(6))
    again = FeatureCache(tmp_path / "c")
    one, _ = again.embed(network, images[2:3])
    assert again.computed == 0 and torch.equal(one[0], full[2])
    assert len(again._rows) == 1  # the other five rows stay on disk


def test_rows_of_a_folded_network_are_kept_apart(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    network, images = support_images(folders)
    folded = FeatureCache(tmp_path / "c", fold_batch_norm=True)
    folded.embed(network, images)
    plain = FeatureCache(tmp_path / "c")
    plain.embed(network, images)
    assert (folded.computed, plain.computed) == (6, 6)  # float rounding differs: other keys
    again = FeatureCache(tmp_path / "c", fold_batch_norm=True)
    again.embed(network, images)
    assert again.computed == 0


def test_unwritable_cache_folder_warns_once_and_still_classifies(
    folders: tuple[Path, Path], tmp_path: Path, embedded: list[int]
) -> None:
    support, query = folders
    paths, labels = paths_and_labels(support)
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")  # a file where the cache folder should be: nothing can be written
    model = FewShotClassifier(backbone(), SupportBasedInit(), cache_dir=blocked)
    with pytest.warns(RuntimeWarning, match="cannot be written") as caught:
        model.fit(paths, labels)
        model.predict([str(p) for p in sorted(query.iterdir())])
    assert len(caught) == 1 and sum(embedded) == 12
    assert model.predict(paths) == labels  # the support rows are kept in memory
    assert sum(embedded) == 12


# --- threads ------------------------------------------------------------------------------
def test_free_cores_leave_the_busy_ones() -> None:
    assert free_cores(load=0.0, cores=2) == 2
    assert free_cores(load=1.2, cores=2) == 1
    assert free_cores(load=5.0, cores=2) == 1  # never below one
    assert free_cores(load=0.3, cores=8) == 8
    torch.set_num_threads(2)
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_an_embedding_loop_reuses_the_heap_and_returns_its_free_memory_once(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside the loop glibc serves large blocks from the heap and keeps them (no page faults
    per batch); after it the default thresholds are back and the free pages returned, once."""
    import platform

    from anyshot import heap

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert heap.release_free_memory()  # glibc's malloc_trim is there to call
        assert heap._mallopt() is not None
    settings: list[tuple[int, int]] = []
    released: list[None] = []
    monkeypatch.setattr(heap, "_mallopt", lambda: lambda p, v: settings.append((p, v)) or 1)
    monkeypatch.setattr(heap, "release_free_memory", lambda: released.append(None) or True)
    network, images = support_images(folders)
    FeatureCache(None).embed(network, images, batch_size=2)  # six images, three batches
    high, default = heap._REUSED_UP_TO, heap._DEFAULT_THRESHOLD
    assert settings == [(-3, high), (-1, high), (-3, default), (-1, default)]
    assert len(released) == 1


@pytest.mark.parametrize("on_unreadable", [True, False])
def test_decoding_on_threads_gives_the_rows_and_reports_of_one_thread(
    folders: tuple[Path, Path], tmp_path: Path, on_unreadable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyshot import embedding
    from anyshot.embedding import ImageList, embed_images
    from anyshot.errors import ImageReadError

    support, query = folders
    bad, worse = tmp_path / "bad.png", tmp_path / "worse.jpg"
    bad.write_bytes(b"not a png")
    worse.write_bytes(b"not a jpeg")
    paths = sorted(str(p) for p in support.rglob("*.png")) + sorted(
        str(p) for p in query.rglob("*.png")
    )
    paths[3:3], paths[8:8] = [str(bad)], [str(worse)]
    network = backbone()
    images = ImageList(paths, network.preprocessing)
    opened_on: list[str] = []
    original = embedding.load_file

    def spy(path: Any, preprocessing: Any) -> Any:
        opened_on.append(threading.current_thread().name)
        return original(path, preprocessing)

    monkeypatch.setattr(embedding, "load_file", spy)
    outcomes = []
    for threads in (1, 3):
        problems: list[Any] = []
        opened_on.clear()
        try:
            rows, kept = embed_images(
                network, images, batch_size=4, decode_threads=threads,
                on_unreadable=problems.append if on_unreadable else None,
            )  # fmt: skip
        except ImageReadError as error:
            outcomes.append(str(error))
            continue
        finally:
            pooled = {name.startswith("anyshot-decode") for name in opened_on}
            assert pooled == ({True} if threads > 1 else {False}), (threads, opened_on)
        outcomes.append((rows, kept, [(p.index, p.source) for p in problems]))
    if not on_unreadable:
        assert outcomes[0] == outcomes[1] and str(bad) in str(outcomes[0])  # the first one
        return
    (one, kept_one, problems_one), (three, kept_three, problems_three) = outcomes
    assert problems_one == problems_three == [(3, str(bad)), (8, str(worse))]
    assert kept_one == kept_three == [i for i in range(len(paths)) if i not in (3, 8)]
    torch.testing.assert_close(one, three, rtol=0, atol=0)


def test_files_decoded_for_their_size_are_keyed_apart_from_fully_decoded_items(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    from anyshot.data import FileDataset, FolderDataset
    from anyshot.embedding import ImageList

    support, _ = folders
    network = backbone()
    folder = FolderDataset(support)  # a user's folders: decoded for their size
    benchmark_like = FileDataset(folder.paths, folder.labels, folder.class_names)  # in full
    listed = ImageList(folder.paths, network.preprocessing)
    cache = FeatureCache(tmp_path / "c")
    rows, _ = cache.embed(network, listed)
    assert cache.computed == len(folder)
    from_folder = cache.features(network, folder, range(len(folder)))  # the same keys
    assert cache.computed == len(folder)
    torch.testing.assert_close(from_folder, rows, rtol=0, atol=0)
    cache.features(network, benchmark_like, range(len(folder)))  # the same files, other keys
    assert cache.computed == 2 * len(folder)


def test_one_pil_image_given_twice_is_loaded_in_the_calling_thread(
    folders: tuple[Path, Path],
) -> None:
    from PIL import Image

    from anyshot.embedding import ImageList, embed_images

    support, _ = folders
    path = sorted(support.rglob("*.png"))[0]
    network = backbone()
    for _ in range(3):  # a lazily opened image loaded from two threads at once fails
        lazy = Image.open(path)
        rows, kept = embed_images(
            network, ImageList([lazy] * 8, network.preprocessing), batch_size=8, decode_threads=4
        )
        assert kept == list(range(8)) and torch.allclose(rows, rows[:1].expand(8, -1))


def test_practitioner_files_are_decoded_for_the_input_size(tmp_path: Path) -> None:
    from PIL import Image

    from anyshot.data import open_image
    from anyshot.embedding import ImageList

    pixels = np.random.default_rng(0).integers(0, 256, (200, 260, 3), dtype=np.uint8)
    path = tmp_path / "large.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    preprocessing = backbone().preprocessing  # 16 px: a 1/8 scale decode
    listed = ImageList([str(path)], preprocessing)[0]
    assert torch.equal(listed, preprocessing(open_image(path, SIZE)))
    assert not torch.equal(listed, preprocessing(open_image(path)))


def test_a_folder_dataset_decodes_for_the_input_size_and_on_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``evaluate --dataset folder`` reads a user's photos as ``classify`` does; the
    benchmark sets' files stay fully decoded."""
    from PIL import Image

    from anyshot.data import FileDataset, FolderDataset, open_image
    from anyshot.data import dataset as dataset_module
    from anyshot.embedding import embedding_batches

    pixels = np.random.default_rng(0).integers(0, 256, (200, 260, 3), dtype=np.uint8)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for k in range(2):
            Image.fromarray(np.roll(pixels, 7 * k, axis=0)).save(tmp_path / name / f"{k}.jpg")
    preprocessing = backbone().preprocessing  # 16 px: a 1/8 scale decode
    folder = FolderDataset(tmp_path)
    whole = FileDataset(folder.paths, folder.labels, folder.class_names)
    reduced = preprocessing(open_image(folder.paths[0], SIZE))
    assert torch.equal(folder.load(0, preprocessing), reduced)
    assert torch.equal(whole.load(0, preprocessing), preprocessing(open_image(folder.paths[0])))
    assert not torch.equal(whole.load(0, preprocessing), reduced)
    opened_on: set[str] = set()
    original = dataset_module.load_file

    def recording(path: Any, preprocessing: Any) -> torch.Tensor:
        opened_on.add(threading.current_thread().name)
        return original(path, preprocessing)

    monkeypatch.setattr(dataset_module, "load_file", recording)
    lazy = folder.images(range(len(folder)), preprocessing)
    assert lazy.is_file(0) and lazy.decode_for_size
    batches = list(embedding_batches(torch.nn.Flatten(), lazy, batch_size=4, decode_threads=2))
    assert {name.startswith("anyshot-decode") for name in opened_on} == {True}
    torch.testing.assert_close(batches[0][1][0], reduced.flatten(), rtol=0, atol=0)

    class SharedHandle(FileDataset):  # reads its items its own way: not on the pool
        def image(self, index: int) -> Image.Image:
            return super().image(index)

    shared = SharedHandle(folder.paths, folder.labels, folder.class_names)
    assert not shared.images([0], preprocessing).is_file(0)


def test_the_converted_network_is_made_once_until_the_backbone_changes(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Labelled and query images embedded in two calls share one converted copy; weights
    changed in place make a new one, whose rows are the changed network's."""
    network, images = support_images(folders)
    made: list[int] = []
    original = feature_cache.inference_network

    def counting(*args: Any, **kwargs: Any) -> torch.nn.Module:
        made.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(feature_cache, "inference_network", counting)
    cache = FeatureCache(None, fold_batch_norm=True)
    first, _ = cache.embed(network, images[:3])
    cache.embed(network, images[3:])
    assert len(made) == 1
    next(network.parameters()).data.mul_(-1.0)  # .data: no version counter moves
    changed, _ = cache.embed(network, images[:3])
    expected, _ = FeatureCache(None, fold_batch_norm=True).embed(network, images[:3])
    assert len(made) == 3  # the cache above and a fresh one: each converted the changed network
    assert torch.equal(changed, expected) and not torch.equal(changed, first)
    assert cache._converted is not None
    del network
    gc.collect()
    assert cache._converted is None  # the copy goes with the backbone


def test_files_are_decoded_on_every_core_even_with_one_torch_thread(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a busy machine torch gets one thread; decoding (no spinning) still uses the cores."""
    from anyshot import embedding
    from anyshot.embedding import ImageList, embed_images

    paths = sorted(str(p) for p in folders[1].rglob("*.png"))
    network = backbone()
    workers: list[int] = []
    original = embedding.ThreadPoolExecutor

    def recording(count: int, **kwargs: Any) -> Any:
        workers.append(count)
        return original(count, **kwargs)

    monkeypatch.setattr(embedding, "ThreadPoolExecutor", recording)
    monkeypatch.setattr(embedding, "available_cores", lambda: 3)
    with torch_threads(1):
        embed_images(network, ImageList(paths, network.preprocessing), batch_size=4)
    assert workers == [3]
