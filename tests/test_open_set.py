"""Open-set evaluation: the sampler, the outlier and calibration metrics, records, the command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anyshot.calibration import calibration_bins, expected_calibration_error
from anyshot.cli import main
from anyshot.episodes import OUTLIER, Episode, EpisodeSpec, spec_query_targets
from anyshot.errors import DatasetError
from anyshot.evaluation import EvaluationResult, episode_record
from anyshot.evaluation.run import EvaluationConfig, run_evaluation
from anyshot.methods.presets import RECOMMENDED
from anyshot.outliers import (
    auroc,
    average_precision,
    covering_centre,
    episode_outlier_score,
    msp_score,
    nearest_mean_distance,
    outlier_centre,
    outlier_distance,
    unknown_threshold,
)
from anyshot.protocols import OpenSetSampler, build_sampler
from conftest import write_colour_folder

#: 12 classes of 10 items: class c holds items 10c .. 10c + 9.
LABELS = np.repeat(np.arange(12), 10)


# --- the sampler -------------------------------------------------------------------------------
def test_outliers_come_from_other_classes_in_the_asked_numbers() -> None:
    sampler = OpenSetSampler(
        LABELS, ways=5, shots=1, inlier_queries=7, outlier_queries=6, outlier_classes=3, seed=2
    )
    for spec in sampler.take(50):
        outlier_classes = {int(LABELS[i]) for i in spec.outliers}
        assert outlier_classes.isdisjoint(spec.classes)
        assert len(outlier_classes) == 3 and len(spec.outliers) == 6
        assert [len(q) for q in spec.query] == [2, 2, 1, 1, 1]  # 7 split evenly
        items = [i for s in spec.support for i in s] + spec.query_items
        assert len(items) == len(set(items)) == 5 + 7 + 6
        targets = spec_query_targets(spec)
        assert targets.tolist()[-6:] == [OUTLIER] * 6 and int(targets[:7].min()) >= 0


def test_the_same_seed_gives_the_same_episodes_and_the_same_inliers_at_any_outlier_count() -> None:
    def sampler(outliers: int, seed: int = 4) -> OpenSetSampler:
        return OpenSetSampler(LABELS, ways=3, shots=2, outlier_queries=outliers, seed=seed)

    assert list(sampler(9).take(5)) == list(sampler(9).take(5))
    assert list(sampler(9).take(5)) != list(sampler(9, seed=5).take(5))
    clean, mixed = sampler(0).sample(3), sampler(9).sample(3)
    assert clean.outliers == () and len(mixed.outliers) == 9
    assert (clean.classes, clean.support, clean.query) == (
        mixed.classes,
        mixed.support,
        mixed.query,
    )


def test_too_few_other_classes_for_the_outliers_is_explained() -> None:
    with pytest.raises(DatasetError, match="other than the 5 support classes") as raised:
        OpenSetSampler(LABELS, ways=5, shots=1, outlier_classes=8)
    assert "classes have that many: lower --outlier-classes" in str(raised.value)
    assert "split" not in str(raised.value)  # also a user's own tree
    with pytest.raises(ValueError, match="inlier_queries >= 1"):
        OpenSetSampler(LABELS, ways=5, shots=1, inlier_queries=0)
    sampler = build_sampler("open-set", LABELS, ways=2, shots=1, outlier_queries=4, seed=1)
    assert sampler.sample(0).outliers and sampler.config()["outlier_classes"] == 4  # type: ignore[attr-defined]


# --- scores and metrics ------------------------------------------------------------------------
def test_auroc_and_average_precision_by_hand() -> None:
    # outliers score 0.35 and 0.8, inliers 0.1 and 0.4: 3 of the 4 (outlier, inlier) pairs are
    # ordered right -> AUROC 3/4; thresholds 0.8 (P 1, R 1/2), 0.4 (P 1/2), 0.35 (P 2/3, R 1)
    # -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6 (scikit-learn's documented example)
    scores, outlier = [0.1, 0.4, 0.35, 0.8], [False, False, True, True]
    assert auroc(scores, outlier) == pytest.approx(0.75)
    assert average_precision(scores, outlier) == pytest.approx(5 / 6)
    assert auroc([0.5, 0.5], [False, True]) == 0.5  # a tie counts one half
    assert average_precision([0.5, 0.5], [False, True]) == 0.5
    assert auroc([0.0, 1.0, 2.0], [False, True, True]) == 1.0
    with pytest.raises(ValueError, match="at least one outlier and one inlier"):
        auroc([0.1, 0.2], [False, False])


def test_auroc_matches_the_pair_count_on_random_scores() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=40).astype(float)  # many ties
    outlier = rng.random(40) < 0.4
    pos, neg = scores[outlier], scores[~outlier]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auroc(scores, outlier) == pytest.approx(pairs)


def test_expected_calibration_error_by_hand() -> None:
    # 0.8-confident and 4 of 5 right: perfectly calibrated
    assert expected_calibration_error(np.full(5, 0.8), np.arange(5) < 4) == pytest.approx(0.0)
    # bin (13/15, 14/15]: 2 at 0.9, 1 right -> |1 - 1.8|; bin (8/15, 9/15]: 2 at 0.6, both right
    # -> |2 - 1.2|; ECE = 1.6 / 4
    confidence = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([True, False, True, True])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.4)
    bins = calibration_bins(confidence, correct)
    assert bins.count.tolist() == [0] * 8 + [2] + [0] * 4 + [2, 0]
    halves = calibration_bins(confidence[:2], correct[:2]) + calibration_bins(
        confidence[2:], correct[2:]
    )
    assert halves.ece() == pytest.approx(0.4)  # bins of parts add up to the pooled bins
    edges = calibration_bins(np.array([0.0, 1.0]), np.array([False, True]))
    assert edges.count[0] == 1 and edges.count[-1] == 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration_bins(np.array([1.5]), np.array([True]))


def test_msp_and_nearest_mean_scores() -> None:
    logits = torch.tensor([[[0.0, 0.0], [10.0, 0.0]]])  # [E=1, Q=2, K=2]
    scores = msp_score(logits)
    assert scores.shape == (1, 2)
    assert scores[0, 0] == pytest.approx(0.5) and scores[0, 1] < 1e-4
    support = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    query = torch.tensor([[[2.0, 0.0], [1.0, 1.0]]])
    distance = nearest_mean_distance(support, torch.tensor([[0, 1]]), query, 2)
    assert distance[0].tolist() == pytest.approx([0.0, 1.0 - 0.5**0.5])


# --- records -----------------------------------------------------------------------------------
def test_open_set_records_score_inliers_and_outliers() -> None:
    # 2 inliers (one right), 2 outliers; the outliers' logits are flatter -> higher MSP score
    logits = torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.2, 0.0], [0.0, 0.1]])
    targets = torch.tensor([0, 1, OUTLIER, OUTLIER])
    record = episode_record(0, logits, targets, ways=2, shots=[1, 1], seconds=0.0)
    assert record["accuracy"] == 0.5 and record["outliers"] == 2
    assert record["auroc"] == 1.0 and record["aupr"] == 1.0
    assert sum(record["calibration"]["count"]) == 4
    assert sum(record["inlier_calibration"]["count"]) == 2
    closed = episode_record(1, logits[:2], targets[:2], ways=2, shots=[1, 1], seconds=0.0)
    assert "auroc" not in closed and sum(closed["calibration"]["correct"]) == 1
    summary = EvaluationResult(records=[record, closed]).summary
    confidence = torch.softmax(logits, 1).amax(1)
    pooled = expected_calibration_error(
        torch.cat([confidence, confidence[:2]]), [True, False, False, False, True, False]
    )
    assert summary["ece"] == pytest.approx(pooled)
    assert summary["auroc_mean"] == 1.0 and summary["open_set_episodes"] == 1


def test_open_set_records_score_the_given_outlier_scores_and_the_msp() -> None:
    logits = torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.2, 0.0], [0.0, 0.1]])
    targets = torch.tensor([0, 1, OUTLIER, OUTLIER])
    backwards = torch.tensor([0.9, 0.8, 0.1, 0.2])  # ranks every outlier below every inlier
    record = episode_record(
        0, logits, targets, ways=2, shots=[1, 1], seconds=0.0, outlier_scores=backwards
    )
    assert record["outlier_score"] == "nearest-mean"
    assert record["auroc"] == 0.0 and record["msp_auroc"] == 1.0
    summary = EvaluationResult(records=[record]).summary
    assert summary["auroc_mean"] == 0.0 and summary["msp_auroc_mean"] == 1.0
    assert summary["outlier_score"].startswith("nearest-mean: cosine distance")
    with pytest.raises(ValueError, match="need 4 outlier scores"):
        episode_record(0, logits, targets, ways=2, shots=[1, 1], seconds=0.0,
                       outlier_scores=backwards[:3])  # fmt: skip


def test_the_episode_outlier_score_centres_only_where_the_queries_cover_the_classes() -> None:
    g = torch.Generator().manual_seed(0)
    means = torch.randn(4, 16, generator=g) + 3.0  # a shared direction, as pooled features have
    support = means.repeat_interleave(2, 0) + 0.3 * torch.randn(8, 16, generator=g)
    targets = torch.arange(4).repeat_interleave(2)
    covering = means + 0.3 * torch.randn(4, 16, generator=g)  # one query of each class
    one_class = means[:1].repeat(4, 1) + 0.3 * torch.randn(4, 16, generator=g)
    for query, centred in ((covering, True), (one_class, False)):
        batch = support[None], targets[None], query[None]
        score = episode_outlier_score(*batch, 4)
        raw = nearest_mean_distance(*batch, 4)
        centre = outlier_centre(support[None], query[None])
        if centred:  # the mean of the centred and the uncentred distances
            expected = (nearest_mean_distance(*batch, 4, centre=centre) + raw) / 2
            assert torch.allclose(score, expected) and not torch.allclose(score, raw)
        else:
            assert torch.equal(score, raw)
            assert not torch.allclose(score, nearest_mean_distance(*batch, 4, centre=centre))


def test_a_far_row_scores_far_with_centred_rows() -> None:
    """A row far from every class (a blank frame's) keeps a high score where the rows are
    centred: centring alone keeps only the direction of its offset from the centre, and that
    direction lies nearer some class mean than a class's own images do."""
    g = torch.Generator().manual_seed(0)
    means = torch.rand(5, 32, generator=g) + 1.0
    support = means.repeat_interleave(3, 0) + 0.4 * torch.randn(15, 32, generator=g)
    targets = torch.arange(5).repeat_interleave(3)
    query = means.repeat_interleave(4, 0) + 0.4 * torch.randn(20, 32, generator=g)
    blank = torch.zeros(1, 32)
    blank[0, 0] = 1.0  # one unit active: nothing like any class
    rows = torch.cat([query, blank])[None]
    centre, covered = covering_centre(support[None], targets[None], query[None], 5)
    assert bool(covered[0])
    centred = nearest_mean_distance(support[None], targets[None], rows, 5, centre=centre)[0]
    score = outlier_distance(support[None], targets[None], rows, 5, centre=centre)[0]
    threshold = unknown_threshold(support, targets, 5, 0.05, centre=centre[0])
    assert score[-1] > threshold and score[-1] > score[:-1].max()
    assert centred[-1] < centred[:-1].max()  # centring alone would not single it out
    with pytest.raises(ValueError, match=r"need query \[E, Q, D\]"):
        outlier_distance(support[None], targets[None], query, 5, centre=centre)


# --- the command -------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_colour_folder(tmp_path / "data", classes=5, per_class=6)


def test_evaluate_protocol_open_set_end_to_end(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "os.json"
    argv = ["evaluate", "--dataset", "folder", "--data-root", str(folder), "--ways", "2",
            "--shots", "1", "--protocol", "open-set", "--inlier-queries", "4",
            "--outlier-queries", "3", "--outlier-classes", "2", "--episodes", "4",
            "--method", "support-init", "--backbone", "conv4", "--image-size", "16",
            "--cache-dir", str(tmp_path / "cache"), "--save-episodes", str(tmp_path / "e.jsonl"),
            "--seed", "3", "--quiet", "--output", str(output)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "inlier accuracy" in printed and "AUROC" in printed and "ECE" in printed
    assert "inlier queries alone: ECE" in printed
    data = json.loads(output.read_text())
    assert data["config"]["protocol"] == "open-set" and data["config"]["outlier_queries"] == 3
    for record in data["episodes"]:
        assert record["queries"] == 7 and record["outliers"] == 3
        assert 0.0 <= record["auroc"] <= 1.0 and 0.0 <= record["aupr"] <= 1.0
        assert record["outlier_score"] == "nearest-mean" and 0.0 <= record["msp_auroc"] <= 1.0
    keys = ("ece", "inlier_ece", "auroc_mean", "auroc_ci95", "aupr_mean", "msp_auroc_mean")
    for key in keys:
        assert key in data["summary"], key
    # the saved episodes (outliers included) re-run to the same records, without the cache
    again = tmp_path / "again.json"
    assert main(["evaluate", "--dataset", "folder", "--data-root", str(folder),
                 "--episodes-file", str(tmp_path / "e.jsonl"), "--method", "support-init",
                 "--backbone", "conv4", "--image-size", "16", "--seed", "3", "--quiet",
                 "--output", str(again)]) == 0  # fmt: skip
    rerun = json.loads(again.read_text())["episodes"]
    assert [r["outliers"] for r in rerun] == [3] * 4
    assert [r["auroc"] for r in rerun] == pytest.approx([r["auroc"] for r in data["episodes"]])
    assert main(["report", str(output), "--output", str(tmp_path / "report")]) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "3 outliers from 2 other classes" in markdown and "Calibration and outliers" in markdown
    assert (tmp_path / "report" / "plots" / "report-reliability-folder-data.png").exists()


def test_transductive_methods_get_the_outliers_as_queries_but_not_their_labels(
    folder: Path,
) -> None:
    _, episode, _ = _conv4_open_set_episode(folder, shots=1, each=2, outlier_classes=1)
    assert len(episode.query) == 4 and episode.query_labels is None
    # the plain (image) path: the default transductive method runs on all 4 queries
    (result,) = run_evaluation(
        EvaluationConfig(
            dataset="folder",
            data_root=folder,
            ways=(2,),
            shots=(1,),
            episodes=2,
            method=dataclasses.replace(RECOMMENDED, epochs=1),
            backbone="conv4",
            image_size=16,
            protocol="open-set",
            inlier_queries=2,
            outlier_queries=2,
            outlier_classes=1,
        )
    )
    assert [(r["queries"], r["outliers"]) for r in result.records] == [(4, 2), (4, 2)]


def _conv4_open_set_episode(
    folder: Path, *, shots: int, each: int, outlier_classes: int
) -> tuple[EpisodeSpec, Episode, torch.nn.Module]:
    """A 2-way open-set episode of ``folder`` (``each`` inlier and outlier queries), its spec
    and the 16 px ``conv4`` backbone it was made for."""
    from anyshot.backbones import build_backbone
    from anyshot.data import load_dataset
    from anyshot.episodes import make_episode

    dataset = load_dataset("folder", folder, "test")
    spec = OpenSetSampler(
        dataset.labels,
        ways=2,
        shots=shots,
        inlier_queries=each,
        outlier_queries=each,
        outlier_classes=outlier_classes,
    ).sample(0)
    backbone = build_backbone("conv4", image_size=16)
    return spec, make_episode(dataset, spec, backbone.preprocessing), backbone


class _CountingBackbone(torch.nn.Module):
    """A backbone that counts the images it embeds."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return self.network(x)


@pytest.mark.parametrize("method", ["support-init", "recommended"])
def test_open_set_episodes_are_embedded_once_with_the_methods_own_answer(
    folder: Path, method: str
) -> None:
    from anyshot.evaluation import evaluate
    from anyshot.methods.frozen import frozen_forward
    from anyshot.methods.presets import SUPPORT_INIT

    trained = dataclasses.replace(RECOMMENDED, epochs=2)
    chosen = SUPPORT_INIT if method == "support-init" else trained
    spec, episode, built = _conv4_open_set_episode(folder, shots=2, each=4, outlier_classes=2)
    backbone = _CountingBackbone(built)
    record = evaluate(chosen, backbone, [episode], targets=lambda _i, _e: spec_query_targets(spec))
    assert backbone.images == len(episode.support) + len(episode.query)  # once, not twice
    # the same answer and scores as the method called on its own and the score on its rows
    (row,) = record.records
    truth = spec_query_targets(spec)
    outlier = truth < 0
    logits = chosen(backbone, episode)
    answer = chosen.fit(backbone, episode).answer if method == "recommended" else None
    assert row.get("answer") == answer and (answer is None) == (method == "support-init")
    assert row["accuracy"] == float((logits.argmax(-1) == truth)[~outlier].float().mean())
    assert row["msp_auroc"] == pytest.approx(auroc(msp_score(logits), outlier))
    log_p = logits.float().log_softmax(-1)
    assert row["entropy"] == pytest.approx(float(-(log_p.exp() * log_p).sum(-1).mean()), abs=1e-5)
    support = frozen_forward(backbone, episode.support, batch_size=64).flatten(1)
    query = frozen_forward(backbone, episode.query, batch_size=64).flatten(1)
    expected = episode_outlier_score(
        support[None], episode.support_targets[None], query[None], episode.ways
    )[0]
    assert row["outlier_score"] == "nearest-mean"
    assert row["auroc"] == pytest.approx(auroc(expected, outlier))
    assert row["aupr"] == pytest.approx(average_precision(expected, outlier))
