"""anyshot.evaluation.run from Python (no argparse), and the CLI's single arguments -> method
function shared by ``evaluate`` and ``classify`` / ``fit``."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from anyshot.cli import build_parser, main
from anyshot.cli.options import method_from_args
from anyshot.errors import ConfigurationError, ImageReadError
from anyshot.evaluation import EvaluationResult
from anyshot.evaluation.run import (
    EvaluationConfig,
    EvaluationInterrupted,
    EvaluationStopped,
    run_evaluation,
)
from anyshot.methods import FineTuning, TransductiveFineTuning
from anyshot.methods.presets import (
    NETWORK,
    PAPER,
    RECOMMENDED,
    RECOMMENDED_INDUCTIVE,
    SUPPORT_INIT,
)
from anyshot.methods.scope_rule import ScopeRule
from conftest import noisy_image, write_colour_folder

EVALUATE = ["evaluate", "--dataset", "folder", "--data-root", "d", "--output", "o.json"]
CLASSIFY = ["classify", "--support", "s", "--query", "q"]

OPTION_SETS = [
    [],
    ["--method", "support-init"],
    ["--method", "support-init", "--temperature", "1"],
    ["--method", "finetune"],
    ["--scope", "last"],
    ["--method", "finetune", "--scope", "all", "--lr", "0.001"],
    ["--temperature", "0.5", "--epochs", "3", "--seed", "7"],
    ["--no-adaptive-balance", "--balance-weight", "1", "--center"],
    ["--likelihood-weight", "0", "--entropy-weight", "1", "--batch-size", "8"],
]


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: " ".join(o) or "defaults")
def test_evaluate_and_classify_build_the_same_method(options: list[str]) -> None:
    parser = build_parser()
    evaluated = method_from_args(parser.parse_args([*EVALUATE, *options]))
    classified = method_from_args(parser.parse_args([*CLASSIFY, *options]))
    if isinstance(classified, ScopeRule):  # classify's default scope: auto
        assert "--scope" not in options
        classified = classified.head
    assert evaluated == classified


def test_method_from_args_starts_from_the_presets() -> None:
    parser = build_parser()

    def method(*options: str) -> Any:
        return method_from_args(parser.parse_args([*CLASSIFY, *options]))

    assert method() == ScopeRule(head=RECOMMENDED, network=NETWORK)
    assert method("--scope", "head") == RECOMMENDED
    # --batch-size (default 64) is the method's batch too
    assert method("--method", "support-init") == dataclasses.replace(SUPPORT_INIT, batch_size=64)
    assert SUPPORT_INIT.temperature == RECOMMENDED.temperature == 0.1
    assert method("--method", "finetune", "--scope", "head") == RECOMMENDED_INDUCTIVE
    assert method("--scope", "all") == PAPER
    assert type(method("--method", "finetune", "--scope", "last")) is FineTuning
    assert method("--epochs", "3", "--scope", "head") == dataclasses.replace(RECOMMENDED, epochs=3)


@pytest.mark.parametrize("command", [EVALUATE, CLASSIFY], ids=["evaluate", "classify"])
def test_method_errors_are_the_same_for_every_command(command: list[str]) -> None:
    parser = build_parser()
    with pytest.raises(ConfigurationError, match="support-init does no training"):
        method_from_args(parser.parse_args([*command, "--method", "support-init", "--epochs", "2"]))
    with pytest.raises(ConfigurationError, match="--scope apply to"):
        method_from_args(
            parser.parse_args([*command, "--method", "support-init", "--scope", "head"])
        )
    with pytest.raises(ConfigurationError, match="--balance-weight apply to --method transductive"):
        method_from_args(
            parser.parse_args([*command, "--method", "finetune", "--balance-weight", "1"])
        )


# --- run_evaluation from Python ----------------------------------------------------------------
@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_colour_folder(tmp_path / "data", classes=4, per_class=5)


def config(folder: Path, **changes: Any) -> EvaluationConfig:
    base = EvaluationConfig(
        dataset="folder",
        data_root=folder,
        ways=(3,),
        shots=(1,),
        queries=2,
        episodes=3,
        method=SUPPORT_INIT,
        backbone="conv4",
        image_size=16,
        seed=4,
    )
    return dataclasses.replace(base, **changes)


def without_seconds(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_run_evaluation_from_python_matches_the_command(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (result,) = run_evaluation(config(folder))  # no output file: the result is returned
    assert [r["index"] for r in result.records] == [0, 1, 2]
    assert result.config["method"] == "support-init"
    assert result.config["method_options"]["temperature"] == SUPPORT_INIT.temperature
    assert not list(tmp_path.glob("*.json"))

    output = tmp_path / "cli.json"
    argv = ["evaluate", "--dataset", "folder", "--data-root", str(folder), "--ways", "3",
            "--shots", "1", "--queries", "2", "--episodes", "3", "--method", "support-init",
            "--backbone", "conv4", "--image-size", "16", "--seed", "4", "--quiet",
            "--output", str(output)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert without_seconds(json.loads(output.read_text())["episodes"]) == without_seconds(
        result.records
    )


def test_run_evaluation_sweep_writes_a_file_per_setting_and_reports_each(
    folder: Path, tmp_path: Path
) -> None:
    seen: list[tuple[int, Path | None, str | None]] = []
    messages: list[str] = []

    def on_result(result: EvaluationResult, path: Path | None, setting: str | None) -> None:
        seen.append((len(result.records), path, setting))

    method = TransductiveFineTuning(scope="head", temperature=0.1, lr=0.01, epochs=2)
    results = run_evaluation(
        config(
            folder,
            ways=[2, 3],  # lists are accepted
            method=method,
            cache_dir=tmp_path / "cache",
            output=tmp_path / "r.json",
            save_episodes=tmp_path / "e.jsonl",
        ),
        log=messages.append,
        on_result=on_result,
    )
    assert [r.records[0]["ways"] for r in results] == [2, 3]
    assert seen == [
        (3, tmp_path / "r-2w1s.json", "2-way 1-shot"),
        (3, tmp_path / "r-3w1s.json", "3-way 1-shot"),
    ]
    assert messages == [f"episodes written to {tmp_path / f'e-{w}w1s.jsonl'}" for w in (2, 3)]
    saved = json.loads((tmp_path / "r-3w1s.json").read_text())
    assert saved["config"]["feature_cache"] == str(tmp_path / "cache")
    # the settings as JSON has them (tuples become lists)
    assert saved["config"]["method_options"] == json.loads(json.dumps(dataclasses.asdict(method)))


def test_run_evaluation_rejects_contradictions_before_running(folder: Path) -> None:
    with pytest.raises(ConfigurationError, match="--episodes-file runs the episodes"):
        run_evaluation(config(folder, episodes_file=folder / "nope.jsonl"))
    with pytest.raises(ConfigurationError, match="--sweep"):
        run_evaluation(config(folder, ways=(3,), shots=(1, 2)))


def test_an_interrupted_run_saves_its_finished_episodes(
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import anyshot.evaluation.run as run_module

    real = run_module.evaluate

    def stops_after_two(*args: Any, **kwargs: Any) -> EvaluationResult:
        calls = {"n": 0}

        def hardness(index: int, episode: Any) -> float:
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return 0.0

        return real(*args, **{**kwargs, "hardness": hardness})

    monkeypatch.setattr(run_module, "evaluate", stops_after_two)
    output = tmp_path / "r.json"
    with pytest.raises(EvaluationInterrupted) as stopped:
        run_evaluation(config(folder, output=output))
    assert stopped.value.saved == output and stopped.value.results == []
    saved = json.loads(output.read_text())
    assert saved["config"]["interrupted"] is True
    assert [r["index"] for r in saved["episodes"]] == [0, 1]

    # The command: exit status 130 and where the finished episodes are.
    argv = ["evaluate", "--dataset", "folder", "--data-root", str(folder), "--ways", "3",
            "--episodes", "3", "--queries", "2", "--method", "support-init", "--backbone",
            "conv4", "--image-size", "16", "--quiet",
            "--output", str(tmp_path / "cli.json")]  # fmt: skip
    assert main(argv) == 130
    assert "interrupted: 2 finished episodes saved to" in capsys.readouterr().err


def test_ctrl_c_before_any_episode_says_nothing_was_written(
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C while the cache embeds: exit 130, one line saying so, and no "done in"."""
    import anyshot.evaluation.run as run_module

    def interrupted(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module._Run, "cached", interrupted)
    argv = ["evaluate", "--dataset", "folder", "--data-root", str(folder), "--ways", "3",
            "--episodes", "3", "--queries", "2", "--method", "support-init", "--backbone",
            "conv4", "--image-size", "16", "--cache-dir", str(tmp_path / "cache"),
            "--output", str(tmp_path / "r.json")]  # fmt: skip
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted before any episode finished: no results written" in err
    assert "done in" not in err and not (tmp_path / "r.json").exists()


def test_an_image_cut_short_during_the_run_keeps_the_finished_episodes(
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every file is cut to half its bytes once two episodes have run: the third cannot read
    its images, and the first two are saved with the error, from Python and the command."""
    import anyshot.evaluation.run as run_module

    real = run_module.evaluate

    def cuts_after_two(*args: Any, **kwargs: Any) -> EvaluationResult:
        calls = {"n": 0}

        def hardness(index: int, episode: Any) -> float:
            calls["n"] += 1
            if calls["n"] == 2:
                for path in folder.rglob("*.png"):
                    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
            return 0.0

        return real(*args, **{**kwargs, "hardness": hardness})

    monkeypatch.setattr(run_module, "evaluate", cuts_after_two)
    pristine = {p: p.read_bytes() for p in folder.rglob("*.png")}
    output = tmp_path / "r.json"
    with pytest.raises(EvaluationStopped, match="cannot read image") as stopped:
        run_evaluation(config(folder, output=output))
    assert stopped.value.saved == output
    assert "what finished (2 episodes) was saved to" in str(stopped.value)
    # one run names every unreadable image of the unfinished episodes, not only the first
    assert "more of the run's images cannot be read either" in str(stopped.value)
    assert isinstance(stopped.value, OSError)  # callers catching read errors still do
    saved = json.loads(output.read_text())
    assert "cannot read image" in saved["config"]["stopped_by"]
    assert "interrupted" not in saved["config"]
    assert [r["index"] for r in saved["episodes"]] == [0, 1]

    for path, data in pristine.items():
        path.write_bytes(data)
    argv = ["evaluate", "--dataset", "folder", "--data-root", str(folder), "--ways", "3",
            "--episodes", "3", "--queries", "2", "--method", "support-init", "--backbone",
            "conv4", "--image-size", "16", "--quiet",
            "--output", str(tmp_path / "cli.json")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "anyshot: error: cannot read image" in err
    assert f"what finished (2 episodes) was saved to {tmp_path / 'cli.json'}" in err
    assert ".;" not in err


def test_a_read_error_after_the_cache_keeps_the_finished_episodes(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With cached features, images can still be read per episode (the hardness model): an
    error there keeps what finished, as in the plain path."""
    import anyshot.evaluation.run as run_module

    real = run_module.evaluate_cached

    def fails_on_the_second(*args: Any, **kwargs: Any) -> EvaluationResult:
        calls = {"n": 0}

        def hardness(index: int) -> float:
            calls["n"] += 1
            if calls["n"] == 2:
                raise ImageReadError("cannot read image 'x.png': image file is truncated")
            return 0.0

        return real(*args, **{**kwargs, "hardness": hardness})

    monkeypatch.setattr(run_module, "evaluate_cached", fails_on_the_second)
    output = tmp_path / "r.json"
    with pytest.raises(EvaluationStopped, match=r"what finished \(1 episode\) was saved"):
        run_evaluation(config(folder, output=output, cache_dir=tmp_path / "cache"))
    saved = json.loads(output.read_text())
    assert saved["config"]["stopped_by"].endswith("image file is truncated")
    assert len(saved["episodes"]) == 1


def test_files_left_out_of_a_folder_are_a_warning_from_python_too(folder: Path) -> None:
    """The note on skipped files does not depend on the ``log`` callback (the default is none)."""
    first_class = sorted(p for p in folder.iterdir() if p.is_dir())[0]
    (first_class / "notes.jpg").write_text("not an image")
    with pytest.warns(RuntimeWarning, match=r"skipped in .*1 file: .*notes\.jpg"):
        (result,) = run_evaluation(config(folder))
    assert len(result.records) == 3


def test_a_class_too_small_for_any_episode_is_a_warning(folder: Path) -> None:
    """A class folder with fewer images than shots + queries is never drawn: said, by name."""
    noisy_image(folder / "tiny" / "0.png", (10, 200, 30), 999, size=12, noise=25.0)
    with pytest.warns(RuntimeWarning, match=r"1 class folder\(s\) hold fewer than the 3 images"
                      r".* in no episode: tiny \(1\)"):  # fmt: skip
        run_evaluation(config(folder))
    noisy_image(folder / "tiny" / "1.png", (10, 200, 30), 998, size=12, noise=25.0)
    noisy_image(folder / "tiny" / "2.png", (10, 200, 30), 997, size=12, noise=25.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 3 images: drawn like the others, no warning
        run_evaluation(config(folder))
