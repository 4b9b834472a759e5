"""Where the practitioner commands write: data (CSV/JSON) on stdout or in ``--output``, the
summary (counts, skipped files, time) always on stderr, with or without ``--output``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from anyshot.cli import main
from conftest import support_and_query

SMALL = ["--backbone", "conv4", "--image-size", "16", "--method", "support-init"]
COLOURS = {"red": (220, 40, 30), "blue": (30, 60, 220)}


@pytest.fixture
def photos(tmp_path: Path) -> tuple[Path, Path]:
    """``support/<colour>/`` (2 images each plus a skipped text file) and ``query/`` (4)."""
    support, query = support_and_query(tmp_path, COLOURS)
    (support / "red" / "notes.txt").write_text("not an image")
    return support, query


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _is_summary(text: str) -> bool:
    return "support: 2 classes" in text and "notes.txt" in text and "time:" in text


def test_classify_to_stdout_keeps_the_summary_on_stderr(
    photos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    support, query = photos
    assert main(["classify", "--support", str(support), "--query", str(query), *SMALL]) == 0
    out, err = capsys.readouterr()
    rows = _csv_rows(out)
    assert len(rows) == 4 and all(r["path"].endswith(".png") for r in rows)
    assert "support:" not in out and "time:" not in out and "notes.txt" not in out
    assert _is_summary(err) and "path,label" not in err


def test_classify_to_a_file_keeps_the_summary_on_stderr(
    photos: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    support, query = photos
    output = tmp_path / "p.csv"
    argv = ["classify", "--support", str(support), "--query", str(query), "--output", str(output)]
    assert main([*argv, *SMALL]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert _is_summary(err) and f"predictions written to {output}" in err
    assert len(_csv_rows(output.read_text())) == 4


def test_fit_predict_suggest_write_summaries_on_stderr_only(
    photos: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    support, query = photos
    model = tmp_path / "model.pt"
    assert main(["fit", "--support", str(support), "--output", str(model), *SMALL]) == 0
    out, err = capsys.readouterr()
    assert out == "" and _is_summary(err) and f"model written to {model}" in err
    for command in (
        ["predict", "--model", str(model), str(query)],
        ["suggest", "--model", str(model), "--unlabeled", str(query), "-n", "3"],
    ):
        assert main(command) == 0
        out, err = capsys.readouterr()
        assert out.startswith("path,") and "time:" not in out, command
        assert "4 images" in err and "time:" in err and "path," not in err, command
        output = tmp_path / f"{command[0]}.csv"
        assert main([*command, "--output", str(output)]) == 0
        out, err = capsys.readouterr()
        assert out == "" and f"written to {output}" in err, command
        assert output.read_text().startswith("path,"), command


def test_fit_reports_the_method_that_gave_the_answer(
    photos: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without unlabelled images the default's gate fine-tunes on the labelled images alone:
    the summary says so instead of naming the transductive method alone."""
    support, query = photos
    small = [*SMALL[:4], "--scope", "head"]  # the default method's head
    model = tmp_path / "m.pt"
    assert main(["fit", "--support", str(support), "--output", str(model), *small]) == 0
    err = capsys.readouterr().err
    assert "fitted 2 classes (TransductiveFineTuning, scope head: 0 query/unlabelled" in err
    assert "too few for the classes they appear to hold (images that look like none" in err
    assert "do not count): fine-tuned on the labelled images" in err
    argv = ["fit", "--support", str(support), "--unlabeled", str(query), "--output", str(model)]
    assert main([*argv, *small]) == 0  # 4 unlabelled images: still too few for 2 classes
    assert "fine-tuned on the labelled images alone" in capsys.readouterr().err
    no_gate = ["--min-queries-per-class", "0", "--queries-per-shot", "0", "--min-agreement", "0"]
    assert main([*argv, *small, *no_gate]) == 0
    err = capsys.readouterr().err
    assert "fitted 2 classes (TransductiveFineTuning, scope head)" in err
    assert main([*argv, *small, "--method", "finetune"]) == 0
    assert (
        "fitted 2 classes (FineTuning, scope head: trained on the labelled images alone; the 4 "
        "query/unlabelled images were not used in the fit)" in capsys.readouterr().err
    )


def test_an_output_that_is_a_file_the_command_reads_is_refused_and_left_alone(
    photos: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo that names an input image (any spelling of its path) or the model file as
    ``--output`` stops the command; the file keeps its bytes. An earlier run's output inside
    a scanned folder (skipped there, not read) may be written again."""
    support, query = photos
    image = sorted(query.iterdir())[0]
    model = tmp_path / "model.pt"
    assert main(["fit", "--support", str(support), "--output", str(model), *SMALL]) == 0
    alias = query / ".." / query.name / image.name  # the same file, spelt another way
    runs = [
        (["classify", "--support", str(support), "--query", str(query), *SMALL], alias),
        (["fit", "--support", str(support), *SMALL], sorted((support / "blue").iterdir())[0]),
        (["predict", "--model", str(model), str(query)], image),
        (["predict", "--model", str(model), str(query)], model),
        (["suggest", "--model", str(model), "--unlabeled", str(query)], image),
    ]
    capsys.readouterr()
    for argv, target in runs:
        before = target.read_bytes()
        assert main([*argv, "--output", str(target)]) != 0, argv
        err = " ".join(capsys.readouterr().err.split())
        assert "a file this command reads" in err and "name another output file" in err, argv
        assert target.read_bytes() == before, argv
    elsewhere = tmp_path / "p.csv"  # a new file is still fine
    assert main([*runs[0][0], "--output", str(elsewhere)]) == 0 and elsewhere.exists()
    inside = query / "predictions.csv"  # the same command twice: skipped, not read, rewritten
    for _ in range(2):
        assert main([*runs[0][0], "--output", str(inside)]) == 0
    assert inside.read_text().startswith("path,")
