"""Reports: the numbers in the CSV and Markdown, warnings, the hardness line, valid PNG plots."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anyshot.calibration import calibration_bins
from anyshot.cli import main
from anyshot.errors import ResultsFileError
from anyshot.methods.presets import RECOMMENDED
from anyshot.report import load_results, method_label, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def results_file(
    path: Path,
    accuracies: list[float],
    *,
    ways: int,
    shots: int,
    method: str = "support-init",
    hardness: list[float] | None = None,
    protocol: str = "fixed",
    options: dict[str, Any] | None = None,
    calibrated: bool = True,
) -> Path:
    """A results file as ``anyshot evaluate`` writes it (only the fields a report reads); with
    ``calibrated``, every query is predicted with confidence 0.9 (calibration bins)."""
    records = [
        {"index": i, "accuracy": a, "ways": ways, "shots": [shots] * ways, "queries": 15 * ways}
        for i, a in enumerate(accuracies)
    ]
    for record in records if calibrated else []:
        right = np.arange(15 * ways) < round(record["accuracy"] * 15 * ways)
        record["calibration"] = calibration_bins(np.full(15 * ways, 0.9), right).to_dict()
    for record, h in zip(records, hardness or [], strict=False):
        record["hardness"] = h
    config = {
        "dataset": "omniglot",
        "split": "test",
        "protocol": protocol,
        "ways": ways,
        "shots": [shots],
        "queries": 15,
        "method": method,
        "method_options": options or {},
    }
    path.write_text(json.dumps({"summary": {}, "config": config, "episodes": records}))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    hardness = rng.uniform(0.5, 3.0, size=120)
    # support-init lies exactly on accuracy(%) = 95 - 20 h; the other method gets better with h
    exact = (0.95 - 0.20 * hardness).tolist()
    rising = np.clip(0.3 + 0.1 * hardness, 0, 1).tolist()
    files = {
        "5w1s": results_file(
            tmp_path / "a.json", exact, ways=5, shots=1, hardness=hardness.tolist()
        ),
        "5w1s-td": results_file(
            tmp_path / "b.json",
            rising,
            ways=5,
            shots=1,
            method="transductive",
            options={"scope": "head"},
            hardness=hardness.tolist(),
        ),
        "10w1s": results_file(
            tmp_path / "c.json", rng.uniform(0.4, 0.9, 200).tolist(), ways=10, shots=1
        ),
        "40w1s": results_file(
            tmp_path / "d.json",
            rng.uniform(0.3, 0.5, 20).tolist(),
            ways=40,
            shots=1,
            protocol="many-way",
        ),
        "5w5s": results_file(
            tmp_path / "e.json", rng.uniform(0.7, 1.0, 150).tolist(), ways=5, shots=5
        ),
    }
    return {"files": files, "hardness": hardness, "exact": exact}


def test_report_numbers_match_numpy(tmp_path: Path, inputs: dict[str, Any]) -> None:
    report = write_report(list(inputs["files"].values()), tmp_path / "out", name="r")
    rows = read_csv(tmp_path / "out" / "r.csv")
    assert len(rows) == 5
    by_key = {(r["setting"], r["method"]): r for r in rows}
    by_source = {r["source"]: r for r in rows}
    for path in inputs["files"].values():
        data = json.loads(path.read_text())
        accuracy = 100 * np.array([e["accuracy"] for e in data["episodes"]])
        row = by_source[str(path)]
        n = accuracy.size
        assert int(row["episodes"]) == n
        assert float(row["accuracy_mean_pct"]) == pytest.approx(accuracy.mean())
        assert float(row["accuracy_std_pct"]) == pytest.approx(accuracy.std(ddof=1))
        assert float(row["accuracy_ci95_pct"]) == pytest.approx(
            1.96 * accuracy.std(ddof=1) / math.sqrt(n)
        )
    exact_row = by_key[("5-way 1-shot 15q", "support-init")]
    assert float(exact_row["hardness_mean"]) == pytest.approx(inputs["hardness"].mean())
    assert by_key[("10-way 1-shot 15q", "support-init")]["hardness_mean"] == ""
    assert report.markdown is not None and "| 5-way 1-shot 15q | support-init |" in (
        report.markdown.read_text()
    )


def test_report_warnings_for_wide_intervals_and_short_many_way_runs(
    tmp_path: Path, inputs: dict[str, Any]
) -> None:
    report = write_report(list(inputs["files"].values()), tmp_path, plots=False)
    many_way = [w for w in report.warnings if "40-way" in w]
    assert any("only 20 episodes of a many-way setting" in w for w in many_way)
    rows = {r.setting.label: r for r in report.rows if r.method == "support-init"}
    for label, row in rows.items():
        wide = [w for w in report.warnings if label in w and "95% CI" in w and "support-init" in w]
        assert bool(wide) == (row.ci95 > 2.0), label
    text = (tmp_path / "report.md").read_text()
    assert "## Warnings" in text and "only 20 episodes" in text


def test_hardness_line_and_area(tmp_path: Path, inputs: dict[str, Any]) -> None:
    write_report(list(inputs["files"].values()), tmp_path)
    rows = read_csv(tmp_path / "report-hardness.csv")
    fits = {r["method"]: r for r in rows if r["scope"] == "all settings"}
    # one pooled line per method, then one per setting with hardness: here the same episodes
    assert [r["scope"] for r in rows] == ["all settings"] * 2 + ["5-way 1-shot 15q"] * 2
    assert float(fits["support-init"]["correlation"]) == pytest.approx(-1.0)
    exact = fits["support-init"]
    assert int(exact["episodes"]) == 120
    assert float(exact["slope_pct"]) == pytest.approx(-20.0)
    assert float(exact["intercept_pct"]) == pytest.approx(95.0)
    assert float(exact["area"]) == pytest.approx(95.0**2 / (2 * 20.0))  # 225.625
    rising = fits["transductive head"]
    assert float(rising["slope_pct"]) > 0 and rising["area"] == ""
    assert "slope >= 0" in rising["note"]
    assert "n/a (slope >= 0" in (tmp_path / "report.md").read_text()


def test_plots_are_valid_pngs(tmp_path: Path, inputs: dict[str, Any]) -> None:
    report = write_report(list(inputs["files"].values()), tmp_path, name="x")
    names = sorted(p.name for p in report.plots)
    assert names == [
        "x-hardness-omniglot-test.png",
        "x-reliability-omniglot-test.png",
        "x-shots-omniglot-test.png",
        "x-ways-omniglot-test.png",
    ]
    for path in report.plots:
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, path
        assert path.parent == tmp_path / "plots"
        assert f"(plots/{path.name})" in (tmp_path / "x.md").read_text()


def test_bundles_duplicates_and_bad_files(tmp_path: Path, inputs: dict[str, Any]) -> None:
    one = json.loads(inputs["files"]["5w1s"].read_text())
    other = json.loads(inputs["files"]["10w1s"].read_text())
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"results": [one, other]}))
    assert len(load_results([bundle])) == 2
    with pytest.raises(ResultsFileError, match="both hold 'support-init'"):
        load_results([bundle, inputs["files"]["5w1s"]])
    (tmp_path / "junk.json").write_text('{"hello": 1}')
    with pytest.raises(ResultsFileError, match="not an anyshot results file"):
        load_results([tmp_path / "junk.json"])
    with pytest.raises(ResultsFileError, match="not found"):
        load_results([tmp_path / "missing.json"])


def test_method_labels() -> None:
    assert method_label({"method": "support-init", "method_options": {"temperature": 1.0}}) == (
        "support-init"
    )
    options = {"scope": "head", "temperature": 0.1, "lr": 0.02, "balance_weight": 1.0, "seed": 3}
    label = method_label({"method": "transductive", "method_options": options})
    assert label == "transductive head balance=1 lr=0.02 T=0.1"
    # a preset's settings (whatever the seed) are named after it, not listed
    tim = method_label({"method": "transductive", "method_options": {**options, "lr": 0.01}})
    assert tim == "tim-like"
    default = {**dataclasses.asdict(RECOMMENDED), "seed": 7}
    assert method_label({"method": "transductive", "method_options": default}) == "recommended"
    from_file = json.loads(json.dumps(default))  # a results file: its tuples are lists
    assert method_label({"method": "transductive", "method_options": from_file}) == "recommended"
    assert method_label({"label": "mine", "method": "x"}) == "mine"


def test_report_command(tmp_path: Path, inputs: dict[str, Any], capsys) -> None:
    paths = [str(p) for p in inputs["files"].values()]
    assert main(["report", *paths, "--output", str(tmp_path / "cli"), "--no-plots"]) == 0
    captured = capsys.readouterr()
    assert "anyshot: warning:" in captured.err and "many-way" in captured.err
    assert "report.csv" in captured.out
    assert not (tmp_path / "cli" / "plots").exists()
    assert main(["report", str(tmp_path / "nope.json"), "--output", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_one_setting_without_hardness_says_which_plots_are_skipped_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = results_file(tmp_path / "one.json", [0.8, 0.9, 0.7], ways=5, shots=1, calibrated=False)
    report = write_report([one], tmp_path / "r")
    assert report.plots == [] and not (tmp_path / "r" / "plots").exists()
    assert len(report.skipped_plots) == 4
    hardness, ways, shots, reliability = report.skipped_plots
    assert "no reliability diagram" in reliability and "calibration bins" in reliability
    assert "no accuracy-versus-hardness plot" in hardness and "--hardness" in hardness
    assert (
        "no accuracy-versus-ways plot" in ways
        and "every fixed or many-way setting has ways = 5" in ways
    )
    assert "no accuracy-versus-shots plot" in shots and "shots = 1" in shots
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "Not drawn:" in markdown and ways in markdown

    assert main(["report", str(one), "--output", str(tmp_path / "cli")]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if line.startswith("anyshot: note:")]
    assert notes == [f"anyshot: note: {why}" for why in report.skipped_plots]
    assert "note" not in captured.out and "report.md" in captured.out


def test_plots_that_apply_are_drawn_and_only_the_others_noted(
    tmp_path: Path, inputs: dict[str, Any]
) -> None:
    complete = write_report(list(inputs["files"].values()), tmp_path / "all")
    assert complete.skipped_plots == [] and len(complete.plots) == 4
    files = inputs["files"]
    partial = write_report([files["5w1s"], files["10w1s"]], tmp_path / "partial")
    assert sorted(p.name.split("-")[1] for p in partial.plots) == [
        "hardness",
        "reliability",
        "ways",
    ]
    (shots,) = partial.skipped_plots
    assert (
        "no accuracy-versus-shots plot" in shots
        and "every fixed or many-way setting has shots = 1" in shots
    )


def test_rows_carry_the_pooled_ece_and_the_open_set_metrics(tmp_path: Path) -> None:
    # two episodes of 4 queries: 0.9-confident and all right (|4 - 3.6|), then 0.6-confident and
    # half right (|2 - 2.4|); pooled ECE = (0.4 + 0.4) / 8 = 10%
    bins = [
        calibration_bins(np.full(4, 0.9), np.ones(4, bool)),
        calibration_bins(np.full(4, 0.6), np.arange(4) < 2),
    ]
    records = [
        {"index": i, "accuracy": a, "ways": 2, "shots": [1, 1], "queries": 4, "auroc": u,
         "aupr": v, "outliers": 2, "calibration": b.to_dict(), "inlier_calibration": b.to_dict()}
        for i, (a, u, v, b) in enumerate(zip([1.0, 0.5], [0.9, 0.7], [0.8, 0.6], bins, strict=True))
    ]  # fmt: skip
    config = {"dataset": "omniglot", "split": "val", "protocol": "open-set", "ways": 2,
              "shots": [1, 1], "inlier_queries": 2, "outlier_queries": 2, "outlier_classes": 1,
              "method": "support-init", "method_options": {}}  # fmt: skip
    path = tmp_path / "open.json"
    path.write_text(json.dumps({"summary": {}, "config": config, "episodes": records}))
    report = write_report([path], tmp_path / "out")
    (row,) = report.rows
    assert row.setting.label == "2-way 1-shot, 2 queries + 2 outliers from 1 other classes"
    assert row.calibration is not None
    assert row.calibration.ece == pytest.approx(10.0)
    assert row.calibration.predictions == 8
    assert row.calibration.auroc == pytest.approx(
        (80.0, 100 * 1.96 * np.std([0.9, 0.7], ddof=1) / math.sqrt(2))
    )
    assert row.calibration.aupr is not None and row.calibration.aupr[0] == pytest.approx(70.0)
    (line,) = read_csv(tmp_path / "out" / "report.csv")
    assert float(line["ece_pct"]) == pytest.approx(10.0)
    assert float(line["auroc_mean_pct"]) == pytest.approx(80.0)
    # a file written before the product's score: its AUROC is the MSP's
    assert line["outlier_score"] == "msp" and float(line["msp_auroc_mean_pct"]) == 80.0
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Calibration and outliers" in markdown and "| 10.00 |" in markdown

    for record, msp in zip(records, [0.5, 0.6], strict=True):
        record.update(outlier_score="nearest-mean", msp_auroc=msp)
    path.write_text(json.dumps({"summary": {}, "config": config, "episodes": records}))
    (row,) = write_report([path], tmp_path / "out2").rows
    assert row.calibration is not None and row.calibration.score == "nearest-mean"
    assert row.calibration.auroc is not None and row.calibration.auroc[0] == pytest.approx(80.0)
    assert row.calibration.msp_auroc is not None
    assert row.calibration.msp_auroc[0] == pytest.approx(55.0)
    assert "| nearest-mean | 55.00 ±" in (tmp_path / "out2" / "report.md").read_text()
    assert any(p.name == "report-reliability-omniglot-val.png" for p in report.plots)


def test_a_run_cut_short_is_marked_in_the_report(tmp_path: Path) -> None:
    """Ctrl-C or an unreadable image left fewer episodes than asked: the row says so."""
    config = {"dataset": "folder", "ways": 2, "shots": 1, "queries": 2, "episodes": 10,
              "method": "support-init", "method_options": {}}  # fmt: skip
    records = [{"index": i, "accuracy": a, "ways": 2, "shots": [1, 1], "queries": 4}
               for i, a in enumerate([1.0, 0.5, 0.75])]  # fmt: skip
    stopped = tmp_path / "stopped.json"
    stopped.write_text(json.dumps({"config": {**config, "stopped_by": "cannot read image 'x'"},
                                   "episodes": records}))  # fmt: skip
    interrupted = tmp_path / "interrupted.json"
    interrupted.write_text(json.dumps({"config": {**config, "queries": 3, "interrupted": True},
                                       "episodes": records}))  # fmt: skip
    report = write_report([stopped, interrupted], tmp_path / "out")
    found = {w for row in report.rows for w in row.warnings}
    assert any("only 3 of 10 episodes: stopped by an image that could not be read "
               "(cannot read image 'x')" in w for w in found)  # fmt: skip
    assert any("only 3 of 10 episodes: interrupted (Ctrl-C)" in w for w in found)
    complete = tmp_path / "complete.json"
    complete.write_text(json.dumps({"config": {**config, "episodes": 3}, "episodes": records}))
    (row,) = write_report([complete], tmp_path / "out2").rows
    assert not any("only" in w for w in row.warnings)

    single = tmp_path / "single.json"  # one episode: no spread, not a spread of zero
    single.write_text(json.dumps({"config": {**config, "episodes": 1}, "episodes": records[:1]}))
    write_report([single], tmp_path / "out3")
    (line,) = read_csv(tmp_path / "out3" / "report.csv")
    assert line["accuracy_std_pct"] == "" and line["accuracy_ci95_pct"] == ""
    assert "| 100.00 | n/a | n/a | 1 |" in (tmp_path / "out3" / "report.md").read_text()


def test_two_of_ones_own_trees_are_two_datasets(tmp_path: Path) -> None:
    """evaluate --dataset folder on two trees: the same method and setting on each is no
    clash; each tree is a dataset named after its folder."""
    records = [{"index": i, "accuracy": a, "ways": 2, "shots": [1, 1], "queries": 4}
               for i, a in enumerate([1.0, 0.5])]  # fmt: skip
    paths = []
    for tree in ("photos", "scans"):
        config = {"dataset": "folder", "data_root": f"/data/{tree}", "split": None,
                  "ways": 2, "shots": 1, "queries": 2, "method": "support-init",
                  "method_options": {}}  # fmt: skip
        path = tmp_path / f"{tree}.json"
        path.write_text(json.dumps({"config": config, "episodes": records}))
        paths.append(path)
    report = write_report(paths, tmp_path / "out")
    assert sorted(row.dataset for row in report.rows) == ["folder photos", "folder scans"]
