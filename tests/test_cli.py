"""The command line: help text, a real evaluation on the shipped sample, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from anyshot.cli import main
from anyshot.data.omniglot import sample_root


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--dataset", "--ways", "--shots", "--scope", "--backbone", "--seed", "examples:"):
        assert flag in text


def test_evaluate_writes_results_on_the_shipped_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "results.json"
    argv = [
        "evaluate", "--dataset", "omniglot", "--data-root", str(sample_root()), "--split", "test",
        "--ways", "3", "--shots", "1", "--queries", "2", "--episodes", "2",
        "--method", "transductive", "--scope", "head", "--backbone", "conv4",
        "--image-size", "28", "--output", str(output), "--quiet", "--seed", "5",
    ]  # fmt: skip
    assert main(argv) == 0
    line = capsys.readouterr().out
    assert "accuracy" in line and "95% CI" in line
    data = json.loads(output.read_text())
    assert data["summary"]["episodes"] == 2
    assert data["config"]["seed"] == 5 and data["config"]["method"] == "transductive"
    assert [e["ways"] for e in data["episodes"]] == [3, 3]
    assert main(argv) == 0  # same seed, same numbers
    again = json.loads(output.read_text())
    assert [e["accuracy"] for e in again["episodes"]] == [e["accuracy"] for e in data["episodes"]]


def test_clear_error_for_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        ["evaluate", "--dataset", "omniglot", "--data-root", str(tmp_path), "--backbone", "conv4",
         "--output", str(tmp_path / "r.json"), "--quiet"]
    )  # fmt: skip
    assert status == 2
    assert "images_" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_bad_shots_argument_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--dataset", "folder", "--data-root", ".", "--output", "x",
              "--shots", "one"])  # fmt: skip
    assert "comma-separated list of integers" in capsys.readouterr().err


@pytest.mark.parametrize("ways", ["1", "5,1"])
def test_one_way_is_refused_when_the_arguments_are_read(
    ways: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One class leaves nothing to classify: refused before any data is read (the data root
    does not exist), not by an unrelated message from deep in the method."""
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--dataset", "folder", "--data-root", "missing", "--ways", ways])
    assert stop.value.code == 2
    assert "every way count must be >= 2" in capsys.readouterr().err


def test_python_dash_m_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "anyshot", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("anyshot ")


def test_evaluate_defaults_are_the_tuned_head_settings() -> None:
    from anyshot.cli import build_parser
    from anyshot.cli.options import method_from_args
    from anyshot.errors import AnyshotError
    from anyshot.methods.presets import RECOMMENDED

    base = ["evaluate", "--dataset", "omniglot", "--data-root", "x", "--output", "o.json"]
    parser = build_parser()
    method = method_from_args(parser.parse_args(base))
    assert method == RECOMMENDED
    # A flag overrides one setting and keeps the others.
    args = parser.parse_args([*base, "--prior-count", "5", "--no-center"])
    method = method_from_args(args)
    assert (method.prior_count, method.center, method.likelihood_weight) == (5.0, False, 0.2)
    assert method.adaptive_balance and method.balance_weight == 3.0
    args = parser.parse_args([*base, "--no-adaptive-balance", "--balance-weight", "1"])
    method = method_from_args(args)
    assert (method.adaptive_balance, method.balance_weight) == (False, 1.0)
    # Scopes that train the backbone keep the paper's values.
    args = parser.parse_args([*base, "--scope", "last"])
    method = method_from_args(args)
    assert (method.lr, method.temperature, method.entropy_weight) == (5e-5, 1.0, 1.0)
    assert method.likelihood_weight == 0 and not method.center and not method.adaptive_balance
    # Inductive fine-tuning has no query term to tune.
    inductive = method_from_args(parser.parse_args([*base, "--method", "finetune"]))
    assert not inductive.transductive and not inductive.center
    with pytest.raises(AnyshotError, match="--center apply to --method transductive"):
        method_from_args(parser.parse_args([*base, "--method", "finetune", "--center"]))


@pytest.mark.parametrize(
    ("name", "says"),
    [("gpu", "not a device name"), ("cuda:99", "not available"), ("mps", "not available")],
)
def test_a_device_this_machine_lacks_is_one_clear_line(
    name: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if name.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 99:
        pytest.skip("this machine has 100 CUDA devices")
    if name == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    with pytest.raises(SystemExit) as stop:
        main(["classify", "--support", ".", "--query", ".", "--device", name])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --device: {name!r} is {says}" in err and "Traceback" not in err


def test_warnings_are_the_command_s_own_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through ``main``: anyshot's own warning and a library's (Pillow's decompression-bomb
    check), each one line naming where it came from, without Python's file and source."""
    import warnings

    from PIL import Image

    from anyshot.cli import practitioner

    Image.new("L", (8, 8)).save(tmp_path / "x.png")

    def warns(args: object) -> int:  # as if from anyshot's own code
        warnings.warn_explicit("the cache is odd", RuntimeWarning, practitioner.__file__, 1)
        with Image.open(tmp_path / "x.png"):  # 64 pixels, over the limit below
            pass
        return 0

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    monkeypatch.setattr(practitioner, "_run_suggest", warns)
    assert main(["suggest", "--model", "m.pt", "--unlabeled", "u", "--quiet"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "anyshot: warning: the cache is odd"
    assert lines[1].startswith("anyshot: warning (from Pillow, DecompressionBombWarning): ")
    assert len(lines) == 2


@pytest.mark.parametrize("command", ["classify", "evaluate", "fit"])
def test_an_output_path_that_cannot_be_written_stops_before_any_work(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder, or a path below a file, is refused when the arguments are read (the data
    given does not even exist: nothing ran)."""
    (tmp_path / "a-file").write_text("x")
    heads = {
        "classify": ["classify", "--support", "missing", "--query", "missing"],
        "evaluate": ["evaluate", "--dataset", "folder", "--data-root", "missing"],
        "fit": ["fit", "--support", "missing"],
    }
    for output, says in ((tmp_path, "is a folder"), (tmp_path / "a-file" / "r", "is a file")):
        with pytest.raises(SystemExit) as stop:
            main([*heads[command], "--output", str(output)])
        assert stop.value.code == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "argument --output: " in err and says in err
    from anyshot.cli.options import output_file

    target = tmp_path / "new" / "deeper" / "r.json"  # folders that do not exist yet: fine
    assert output_file(str(target)) == target and not target.parent.exists()


def test_evaluate_on_a_folder_leaves_out_a_file_that_is_no_image_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    for k, name in enumerate(("a", "b")):
        for i in range(3):
            (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 20), (90 * k, 40 * i, 0)).save(
                tmp_path / "data" / name / f"{i}.png"
            )
    (tmp_path / "data" / "a" / "notes.jpg").write_text("not an image")
    (tmp_path / "data" / "b" / "phone.HEIC").write_bytes(b"heic")
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"  # an HEIC photo renamed .jpg
    (tmp_path / "data" / "b" / "renamed.jpg").write_bytes(heic)
    copy = (tmp_path / "data" / "a" / "0.png").read_bytes()
    (tmp_path / "data" / "b" / "copy_of_a0.png").write_bytes(copy)
    (tmp_path / "data" / "empty").mkdir()  # left out, the other classes evaluated
    argv = ["evaluate", "--dataset", "folder", "--data-root", str(tmp_path / "data"),
            "--ways", "2", "--shots", "1", "--queries", "2", "--episodes", "2",
            "--method", "support-init", "--backbone", "conv4", "--image-size", "16",
            "--output", str(tmp_path / "r.json"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err  # a warning: stderr, even with --quiet
    assert "anyshot: warning: skipped in" in err and "3 files: " in err
    assert f"1 class folder: {tmp_path / 'data' / 'empty'} (no image file: class left out)" in err
    assert "renamed.jpg (a HEIC image, a format anyshot does not read: convert it to JPEG)" in err
    assert "notes.jpg (Pillow cannot read its image header)" in err
    assert "phone.HEIC (an image format anyshot does not read (.HEIC): convert it to JPEG)" in err
    assert "anyshot: warning: identical files in different classes of" in err
    assert "0.png (class a)" in err and "copy_of_a0.png (class b)" in err
    assert json.loads((tmp_path / "r.json").read_text())["config"]["split"] is None
