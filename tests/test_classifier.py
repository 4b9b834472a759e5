"""FewShotClassifier, the model file, the practitioner commands (classify, fit, predict, suggest).

Most tests use the conv-4 backbone at 16 px on tiny generated images; one reads real
mini-ImageNet **val** images (../shared/data) with the ImageNet EfficientNet-Lite0 and skips with
a reason when they are absent.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import anyshot
from anyshot.backbones import Backbone, build_backbone, save_backbone
from anyshot.classifier import FewShotClassifier
from anyshot.cli import main
from anyshot.errors import CheckpointError, ConfigurationError, DatasetError, ImageReadError
from anyshot.methods import FineTuning, SupportBasedInit, TransductiveFineTuning
from anyshot.methods.presets import NETWORK, RECOMMENDED
from anyshot.methods.scope_rule import ScopeRule
from anyshot.model_file import FORMAT_VERSION, ModelFileError
from conftest import noisy_image

SIZE = 16
CONV4 = ["--backbone", "conv4", "--image-size", str(SIZE), "--quiet"]
COLOURS = {"blue": (30, 60, 220), "green": (40, 200, 60), "red": (220, 40, 30)}
MINI_IMAGENET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mini-imagenet"


def backbone() -> Backbone:
    torch.manual_seed(0)
    return build_backbone("conv4", image_size=SIZE)


def folders(root: Path, shots: dict[str, int], queries: int = 2) -> tuple[Path, Path]:
    """``root/support/<colour>/...`` with ``shots[colour]`` images, ``root/query/`` mixed."""
    seed = 0
    for name, count in shots.items():
        for i in range(count):
            seed += 1
            noisy_image(root / "support" / name / f"{i}.png", COLOURS[name], seed)
        for i in range(queries):
            seed += 1
            noisy_image(root / "query" / f"{name}-{i}.png", COLOURS[name], seed)
    return root / "support", root / "query"


def paths_and_labels(support: Path) -> tuple[list[Path], list[str]]:
    paths = sorted(support.rglob("*.png"))
    return paths, [p.parent.name for p in paths]


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# --- the estimator ------------------------------------------------------------------------
def test_fit_predict_proba_shapes_and_classes(tmp_path: Path) -> None:
    support, query = folders(tmp_path, {"red": 3, "green": 3, "blue": 3})
    paths, labels = paths_and_labels(support)
    model = FewShotClassifier(backbone(), batch_size=4, image_size=SIZE).fit(paths, labels)
    assert model.classes_ == ("blue", "green", "red")
    assert model.classifier_.weight.shape == (3, 64)
    probabilities = model.predict_proba(sorted(query.iterdir()))
    assert probabilities.shape == (6, 3) and probabilities.dtype == np.float64
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    predicted = model.predict(sorted(query.iterdir()))
    assert predicted == [model.classes_[int(k)] for k in probabilities.argmax(1)]
    assert predicted == [p.name.split("-")[0] for p in sorted(query.iterdir())]
    assert model.fit_info_["class_counts"] == {"blue": 3, "green": 3, "red": 3}


def test_pil_images_and_tensors_are_accepted(tmp_path: Path) -> None:
    support, _ = folders(tmp_path, {"red": 2, "blue": 2})
    paths, labels = paths_and_labels(support)
    from_paths = FewShotClassifier(backbone()).fit(paths, labels)
    pil = [Image.open(p) for p in paths]
    from_pil = FewShotClassifier(backbone()).fit(pil, labels)
    tensor = torch.stack([from_paths.preprocessing_(im) for im in pil])
    from_tensor = FewShotClassifier(backbone()).fit(tensor, labels)
    reference = from_paths.predict_proba(paths)
    assert np.array_equal(from_pil.predict_proba(pil), reference)
    assert np.allclose(from_tensor.predict_proba(tensor), reference, atol=1e-6)


def test_one_image_per_class_and_unbalanced_classes(tmp_path: Path) -> None:
    support, query = folders(tmp_path / "one", {"red": 1, "green": 1})
    model = FewShotClassifier(backbone()).fit(*paths_and_labels(support))
    assert model.predict(sorted(query.iterdir())) == ["green", "green", "red", "red"]
    support, query = folders(tmp_path / "unbalanced", {"red": 1, "green": 9, "blue": 2})
    model = FewShotClassifier(backbone()).fit(*paths_and_labels(support))
    assert model.fit_info_["class_counts"] == {"blue": 2, "green": 9, "red": 1}
    assert model.predict_proba(sorted(query.iterdir())).shape == (6, 3)


def test_unlabeled_images_enter_the_transductive_fit(tmp_path: Path) -> None:
    support, query = folders(tmp_path, {"red": 2, "blue": 2})
    paths, labels = paths_and_labels(support)
    unlabeled = sorted(query.iterdir())
    inductive = FewShotClassifier(backbone(), method=RECOMMENDED).fit(paths, labels)
    # 4 unlabelled images for 2 classes: the default head's gate answers with the class means
    gated = FewShotClassifier(backbone(), method=RECOMMENDED)
    gated.fit(paths, labels, unlabeled=unlabeled)
    assert gated.fit_info_["unlabeled_images"] == 4 and gated.fit_info_["fallback"] == "gate"
    assert torch.equal(inductive.classifier_.weight, gated.classifier_.weight)
    no_gate = dataclasses.replace(RECOMMENDED, min_queries_per_class=0.0, queries_per_shot=0.0)
    transductive = FewShotClassifier(backbone(), method=no_gate).fit(
        paths, labels, unlabeled=unlabeled
    )
    assert not torch.equal(inductive.classifier_.weight, transductive.classifier_.weight)


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    support, _ = folders(tmp_path, {"red": 2, "blue": 2})
    paths, labels = paths_and_labels(support)
    with pytest.raises(DatasetError, match="at least 2 classes"):
        FewShotClassifier(backbone()).fit(paths[:2], ["red", "red"])
    with pytest.raises(DatasetError, match="4 images but 3 labels"):
        FewShotClassifier(backbone()).fit(paths, labels[:3])
    with pytest.raises(ConfigurationError, match="not fitted"):
        FewShotClassifier(backbone()).predict(paths)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="bad"):
        FewShotClassifier(backbone()).fit([*paths, bad], [*labels, "red"])
    skipped: list[object] = []
    model = FewShotClassifier(backbone()).fit(
        [*paths, bad], [*labels, "red"], on_unreadable=skipped.append
    )
    assert len(skipped) == 1 and model.fit_info_["skipped"] == 1
    assert model.predict_proba([bad, paths[0]], on_unreadable=skipped.append).shape == (1, 2)


# --- the model file -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "method",
    [None, SupportBasedInit(temperature=0.1), FineTuning(scope="head", epochs=3)],
    ids=["recommended", "support-init", "finetune-head"],
)
def test_saved_model_predicts_bitwise_identically(tmp_path: Path, method: object) -> None:
    support, query = folders(tmp_path, {"red": 2, "green": 2, "blue": 2})
    model = FewShotClassifier(backbone(), method).fit(*paths_and_labels(support))  # type: ignore[arg-type]
    images = sorted(query.iterdir())
    path = tmp_path / "model.pt"
    model.save(path)
    loaded = FewShotClassifier.load(path)
    assert loaded.classes_ == model.classes_
    assert type(loaded.method_) is type(model.method_)
    assert np.array_equal(loaded.predict_proba(images), model.predict_proba(images))


def test_scope_last_saves_the_fine_tuned_backbone(tmp_path: Path) -> None:
    support, query = folders(tmp_path, {"red": 2, "blue": 2})
    original = backbone()
    method = TransductiveFineTuning(scope="last", epochs=3, lr=1e-2)
    model = FewShotClassifier(original, method).fit(*paths_and_labels(support))
    changed = [
        k
        for k, v in model.network_.state_dict().items()
        if not torch.equal(v, original.state_dict()[k])
    ]
    assert changed and all(k.startswith("last.") for k in changed)
    assert torch.equal(
        original.state_dict()["last.0.weight"], backbone().state_dict()["last.0.weight"]
    )
    model.save(tmp_path / "model.pt")
    loaded = FewShotClassifier.load(tmp_path / "model.pt")
    images = sorted(query.iterdir())
    assert np.array_equal(loaded.predict_proba(images), model.predict_proba(images))


@pytest.mark.parametrize("statistics", ["pretrained", "episode"])
def test_scope_all_saves_the_backbone_with_its_norm_statistics(
    tmp_path: Path, statistics: str
) -> None:
    support, query = folders(tmp_path, {"red": 2, "blue": 2})
    original = backbone()
    method = FineTuning(scope="all", epochs=2, lr=1e-2, norm_statistics=statistics)
    model = FewShotClassifier(original, method).fit(*paths_and_labels(support))
    stats = [k for k in original.state_dict() if k.endswith(("running_mean", "running_var"))]
    assert stats
    state = model.network_.state_dict()
    moved = [k for k in stats if not torch.equal(state[k], original.state_dict()[k])]
    assert (moved == stats) if statistics == "episode" else not moved
    model.save(tmp_path / "model.pt")
    loaded = FewShotClassifier.load(tmp_path / "model.pt")
    images = sorted(query.iterdir())
    assert np.array_equal(loaded.predict_proba(images), model.predict_proba(images))


@pytest.mark.parametrize("labels", [[3, 3, 10, 10, 7], ["b", "b", "a", "c", "c"]])
def test_labels_keep_their_type_through_save_and_load(tmp_path: Path, labels: list[object]) -> None:
    images = torch.randn(5, 3, SIZE, SIZE)
    model = FewShotClassifier(backbone()).fit(images, labels)
    model.save(tmp_path / "m.pt")
    loaded = FewShotClassifier.load(tmp_path / "m.pt")
    assert loaded.classes_ == tuple(sorted(set(labels)))  # type: ignore[type-var]
    assert [type(c) for c in loaded.classes_] == [type(labels[0])] * 3
    assert loaded.predict(images) == model.predict(images)
    numpy_labels = FewShotClassifier(backbone()).fit(images, np.array([1, 1, 2, 2, 2]))
    assert [type(c) for c in numpy_labels.classes_] == [int, int]


def test_load_reads_on_the_cpu_with_weights_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = FewShotClassifier(backbone()).fit(torch.randn(4, 3, SIZE, SIZE), [0, 0, 1, 1])
    model.save(tmp_path / "m.pt")
    calls: list[dict[str, object]] = []
    real_load = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real_load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "load", spy)
    loaded = FewShotClassifier.load(tmp_path / "m.pt")
    assert calls == [{"map_location": "cpu", "weights_only": True}]
    assert loaded.classifier_.weight.device.type == "cpu"
    assert all(p.device.type == "cpu" for p in loaded.network_.parameters())


def test_not_a_model_file_is_refused_clearly(tmp_path: Path) -> None:
    checkpoint = save_backbone(backbone(), tmp_path / "backbone.pt")
    with pytest.raises(ModelFileError, match=r"backbone checkpoint.*--backbone"):
        FewShotClassifier.load(checkpoint)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"hello, not a model")
    with pytest.raises(ModelFileError, match="not a torch file"):
        FewShotClassifier.load(garbage)
    model = FewShotClassifier(backbone()).fit(torch.randn(4, 3, SIZE, SIZE), ["a", "a", "b", "b"])
    model.save(tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt/truncated"):
        FewShotClassifier.load(tmp_path / "truncated.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "newer.pt")
    with pytest.raises(
        ModelFileError, match=rf"format version {FORMAT_VERSION + 1}.*Upgrade anyshot"
    ):
        FewShotClassifier.load(tmp_path / "newer.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not an anyshot model file"):
        FewShotClassifier.load(tmp_path / "other.pt")
    assert issubclass(ModelFileError, CheckpointError)
    with pytest.raises(ModelFileError, match="does not exist"):
        FewShotClassifier.load(tmp_path / "missing.pt")


def test_saving_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = FewShotClassifier(backbone()).fit(torch.randn(4, 3, SIZE, SIZE), ["a", "a", "b", "b"])
    path = tmp_path / "m.pt"
    model.save(path)
    before = path.read_bytes()
    other = FewShotClassifier(backbone()).fit(torch.randn(4, 3, SIZE, SIZE), ["x", "x", "y", "y"])

    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(anyshot.io.os, "fsync", fail)  # after the bytes are written, before rename
    with pytest.raises(OSError, match="No space"):
        other.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary file left


# --- the commands -------------------------------------------------------------------------
def test_every_command_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("classify", "fit", "predict", "suggest"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"anyshot {command}" in text, command


def test_classify_csv_sorted_by_path_with_top_k_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    support, query = folders(tmp_path, {"red": 2, "green": 2, "blue": 2})
    noisy_image(query / "sub" / "a-red.png", COLOURS["red"], 99)
    argv = ["classify", "--support", str(support), "--query", str(query), *CONV4]
    assert main([*argv, "--top-k", "2", "--unknown", "off"]) == 0
    out = capsys.readouterr()
    rows = read_csv(out.out)
    header = ["path", "label", "class", "confidence", "label_2", "confidence_2", "outlier_score"]
    assert list(rows[0]) == header
    assert [r["path"] for r in rows] == sorted(str(p) for p in query.rglob("*.png"))
    for row in rows:
        assert float(row["confidence"]) >= float(row["confidence_2"])
        assert row["label"] == row["class"] != row["label_2"]  # --unknown off
        assert 0.0 <= float(row["outlier_score"]) <= 2.0
    assert (
        sum(
            r["label"] == Path(r["path"]).name.split("-")[-2 if "sub" in r["path"] else 0]
            for r in rows
        )
        >= 5
    )
    assert main([*argv, "--top-k", "9", "--output", str(tmp_path / "p.csv")]) == 0
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == (
        "path,label,class,confidence,label_2,confidence_2,label_3,confidence_3,outlier_score"
    )


def test_classify_json_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    support, query = folders(tmp_path, {"red": 1, "blue": 3})
    (support / "red" / "notes.txt").write_text("x")
    output = tmp_path / "p.json"
    argv = ["classify", "--support", str(support), "--query", str(query), "--backbone", "conv4",
            "--image-size", str(SIZE), "--output", str(output), "--format", "json"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().err
    assert "support: 2 classes, 4 images (blue: 3, red: 1)" in printed
    assert "notes.txt" in printed and "time:" in printed
    data = json.loads(output.read_text())
    assert [r["path"] for r in data["predictions"]] == sorted(str(p) for p in query.iterdir())
    assert data["summary"]["classes"] == ["blue", "red"]
    assert data["summary"]["support"]["skipped_by_kind"] == {"not-image": 1}
    assert math.isclose(sum(a["confidence"] for a in data["predictions"][0]["top_k"]), 1.0)


def test_fit_predict_suggest_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    support, query = folders(tmp_path, {"red": 3, "green": 3, "blue": 3}, queries=3)
    model_path = tmp_path / "model.pt"
    assert main(["fit", "--support", str(support), "--unlabeled", str(query),
                 "--output", str(model_path), *CONV4]) == 0  # fmt: skip
    model = FewShotClassifier.load(model_path)
    assert model.classes_ == ("blue", "green", "red") and model.fit_info_["unlabeled_images"] == 9
    capsys.readouterr()

    extra = noisy_image(tmp_path / "single.png", COLOURS["green"], 123)
    assert main(["predict", "--model", str(model_path), str(query), str(extra), "--quiet"]) == 0
    rows = read_csv(capsys.readouterr().out)
    paths = sorted([*(str(p) for p in query.iterdir()), str(extra)])
    assert [r["path"] for r in rows] == paths
    expected = model.predict_proba(paths)
    for row, probabilities in zip(rows, expected, strict=True):
        assert row["label"] == model.classes_[int(probabilities.argmax())]
        assert float(row["confidence"]) == pytest.approx(probabilities.max(), abs=1e-6)

    output = tmp_path / "suggest.csv"
    assert main(["suggest", "--model", str(model_path), "--unlabeled", str(query), "-n", "4",
                 "--output", str(output), "--quiet"]) == 0  # fmt: skip
    suggested = read_csv(output.read_text())
    assert list(suggested[0]) == ["path", "score", "predicted_label"] and len(suggested) == 4
    scores = [float(r["score"]) for r in suggested]
    assert scores == sorted(scores, reverse=True)  # entropy: most uncertain first
    all_entropy = -(expected * np.log(expected)).sum(1)
    assert scores[0] == pytest.approx(all_entropy[[p != str(extra) for p in paths]].max(), abs=1e-5)
    assert main(["suggest", "--model", str(model_path), "--unlabeled", str(query), "--by",
                 "margin", "--quiet"]) == 0  # fmt: skip
    margins = [float(r["score"]) for r in read_csv(capsys.readouterr().out)]
    assert margins == sorted(margins) and len(margins) == 9
    assert main(["suggest", "--model", str(model_path), "--unlabeled", str(query),
                 "--output", str(tmp_path / "s.json")]) == 2  # fmt: skip
    assert "suggest writes CSV" in capsys.readouterr().err and not (tmp_path / "s.json").exists()


def test_cli_model_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, query = folders(tmp_path, {"red": 1, "blue": 1})
    checkpoint = save_backbone(backbone(), tmp_path / "backbone.pt")
    assert main(["predict", "--model", str(checkpoint), str(query), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anyshot: error:") and "--backbone" in err and "Traceback" not in err
    assert main(["suggest", "--model", str(query), "--unlabeled", str(query), "--quiet"]) == 2
    assert "not a file" in capsys.readouterr().err


def test_cli_scope_last_and_support_init_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    support, query = folders(tmp_path, {"red": 2, "blue": 2})
    argv = ["classify", "--support", str(support), "--query", str(query), *CONV4]
    assert main([*argv, "--scope", "last", "--epochs", "2", "--top-k", "1"]) == 0
    assert len(read_csv(capsys.readouterr().out)) == 4
    assert main([*argv, "--method", "support-init", "--scope", "last"]) == 2
    assert "support-init does no training" in capsys.readouterr().err


def test_the_summary_says_when_the_query_images_were_not_used_in_the_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    support, query = folders(tmp_path, {"red": 2, "blue": 2})
    argv = ["classify", "--support", str(support), "--query", str(query)]
    loud = [a for a in CONV4 if a != "--quiet"]
    assert main([*argv, *loud, "--method", "finetune", "--scope", "last", "--epochs", "1"]) == 0
    assert "the 4 query/unlabelled images were not used in the fit" in capsys.readouterr().err
    assert main([*argv, *loud, "--scope", "head"]) == 0  # the default head uses them
    assert "not used in the fit" not in capsys.readouterr().err


# fsync fails for every file: the feature cache's shards too (it warns and goes on in memory).
@pytest.mark.filterwarnings("ignore:feature cache .* cannot be written:RuntimeWarning")
def test_output_file_is_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    support, query = folders(tmp_path, {"red": 1, "blue": 1})
    output = tmp_path / "predictions.csv"
    output.write_text("previous results\n")

    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(anyshot.io.os, "fsync", fail)
    status = main(["classify", "--support", str(support), "--query", str(query),
                   "--output", str(output), *CONV4])  # fmt: skip
    assert status == 2 and "cannot write" in capsys.readouterr().err
    assert output.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv", "query", "support"]


# --- real data ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mini_imagenet_val() -> dict[str, list[Path]]:
    """5 mini-ImageNet val classes, their first 15 images each (sorted by file name)."""
    csv_path = MINI_IMAGENET / "val.csv"
    if not csv_path.is_file() or not (MINI_IMAGENET / "images").is_dir():
        pytest.skip(f"real mini-ImageNet data not found at {MINI_IMAGENET} (../shared/data)")
    by_class: dict[str, list[Path]] = {}
    with csv_path.open() as handle:
        for row in csv.DictReader(handle):
            by_class.setdefault(row["label"], []).append(MINI_IMAGENET / "images" / row["filename"])
    chosen = sorted(by_class)[:5]
    return {wnid: sorted(by_class[wnid])[:15] for wnid in chosen}


def test_classify_real_images_above_chance(
    tmp_path: Path, mini_imagenet_val: dict[str, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    """EfficientNet-Lite0 (ImageNet weights: it has seen these classes) at 84 px, 5-way 5-shot."""
    torch.set_num_threads(max(1, os.cpu_count() or 1))  # real images: use the cores
    for wnid, files in mini_imagenet_val.items():
        for i, source in enumerate(files):
            target = tmp_path / ("support" if i < 5 else "query") / wnid / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
    output = tmp_path / "predictions.csv"
    argv = ["classify", "--support", str(tmp_path / "support"), "--query", str(tmp_path / "query"),
            "--image-size", "84", "--output", str(output), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    rows = read_csv(output.read_text())
    assert len(rows) == 50
    accuracy = np.mean([r["label"] == Path(r["path"]).parent.name for r in rows])
    assert accuracy > 0.5, accuracy  # chance: 0.2


def test_cli_method_options_build_the_recommended_method_and_variants() -> None:
    from anyshot.cli import build_parser
    from anyshot.cli.options import method_from_args
    from anyshot.methods.presets import RECOMMENDED

    def method(*options: str) -> object:
        args = build_parser().parse_args(["classify", "--support", "s", "--query", "q", *options])
        return method_from_args(args)

    assert method() == ScopeRule() and method("--scope", "head") == RECOMMENDED
    rule = method("--lr", "0.001")  # options given apply to both of the rule's candidates
    assert isinstance(rule, ScopeRule) and rule.network.lr == 0.001
    assert method("--scope", "auto", "--time-budget", "30") == ScopeRule(time_budget=30.0)
    tuned = method("--lr", "0.001", "--scope", "head")
    assert rule.head == tuned and rule.network == dataclasses.replace(NETWORK, lr=0.001)
    assert isinstance(tuned, TransductiveFineTuning) and tuned.lr == 0.001
    assert tuned.balance_weight == RECOMMENDED.balance_weight
    assert tuned.temperature == RECOMMENDED.temperature
    inductive = method("--method", "finetune", "--scope", "head")
    assert method("--method", "finetune") == ScopeRule(head=inductive)
    assert type(inductive) is FineTuning and inductive.entropy_weight == 0.0
    assert inductive.balance_weight == 0.0 and inductive.lr == RECOMMENDED.lr
    paper = method("--scope", "all")
    assert isinstance(paper, TransductiveFineTuning) and (paper.lr, paper.temperature) == (5e-5, 1)
    assert method("--balance-weight", "0", "--scope", "head").balance_weight == 0.0  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="--time-budget applies"):
        method("--time-budget", "10", "--scope", "head")
    with pytest.raises(ConfigurationError, match="transductive only"):
        method("--method", "finetune", "--balance-weight", "1")
    always = method("--no-adaptive-balance", "--scope", "head")
    assert isinstance(always, TransductiveFineTuning) and not always.adaptive_balance
    assert always.balance_weight == RECOMMENDED.balance_weight and RECOMMENDED.adaptive_balance
    with pytest.raises(ConfigurationError, match="transductive only"):
        method("--method", "finetune", "--adaptive-balance")


def test_repr_names_the_default_method_and_the_fitted_classes(tmp_path: Path) -> None:
    assert repr(FewShotClassifier()) == (
        "FewShotClassifier(backbone='efficientnet-lite0', method=None (default: ScopeRule(), "
        "head RECOMMENDED / network NETWORK))"
    )
    chosen = FewShotClassifier(backbone(), method=SupportBasedInit())
    assert "method=SupportBasedInit(" in repr(chosen) and "default" not in repr(chosen)
    support, _ = folders(tmp_path, {"red": 1, "blue": 1})
    assert repr(chosen.fit(*paths_and_labels(support))).endswith("classes=['blue', 'red'])")
