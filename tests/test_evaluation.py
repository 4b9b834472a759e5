"""Statistics, the results file, and accuracy well above chance on real Omniglot episodes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from anyshot.backbones import load_backbone
from anyshot.data.omniglot import Omniglot, sample_root
from anyshot.episodes import Episode, EpisodeSampler, make_episode
from anyshot.evaluation import evaluate, summarize
from anyshot.methods import SupportBasedInit, TransductiveFineTuning

SHARED_OMNIGLOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"


def test_summarize_mean_std_and_ci() -> None:
    summary = summarize([0.5, 1.0, 0.75, 0.25])
    assert summary["episodes"] == 4
    assert summary["accuracy_mean"] == pytest.approx(0.625)
    std = math.sqrt(((0.125**2) * 2 + 0.375**2 * 2) / 3)
    assert summary["accuracy_std"] == pytest.approx(std)
    assert summary["accuracy_ci95"] == pytest.approx(1.96 * std / 2)
    assert summarize([0.8])["accuracy_std"] == 0.0
    with pytest.raises(ValueError, match="no episodes"):
        summarize([])


class FixedLogits(nn.Module):
    """Embeds ``[N, D, 1, 1]`` vectors as themselves."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def test_records_and_json_file(tmp_path: Path) -> None:
    support = torch.eye(3)[:, :, None, None]
    # two queries right, one wrong (closest to class 'c' but labelled 'a')
    query = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])[:, :, None, None]
    episodes = [
        Episode(support, ["a", "b", "c"], query, ["a", "b", "a"]),
        Episode(support, ["a", "b", "c"], query, ["a", "b", "c"]),
    ]
    result = evaluate(SupportBasedInit(), FixedLogits(), episodes, config={"name": "t"})
    assert [r["accuracy"] for r in result.records] == pytest.approx([2 / 3, 1.0])
    assert result.records[0]["ways"] == 3 and result.records[0]["shots"] == [1, 1, 1]
    path = result.save(tmp_path / "deep" / "results.json")
    data = json.loads(path.read_text())
    assert set(data) == {"summary", "config", "episodes"}
    assert data["summary"]["accuracy_mean"] == pytest.approx(5 / 6)
    assert {"accuracy_mean", "accuracy_std", "accuracy_ci95", "episodes"} <= set(data["summary"])
    assert all(0.0 <= e["accuracy"] <= 1.0 for e in data["episodes"])
    assert data["config"]["name"] == "t"
    assert not list(tmp_path.glob("deep/.*tmp"))  # no temporary file left behind


def test_episodes_without_query_labels_are_refused() -> None:
    episode = Episode(torch.eye(2)[:, :, None, None], ["a", "b"], torch.eye(2)[:, :, None, None])
    with pytest.raises(ValueError, match="query labels"):
        evaluate(SupportBasedInit(), FixedLogits(), [episode])


@pytest.fixture(scope="module")
def lite0_84() -> nn.Module:
    return load_backbone("efficientnet-lite0", image_size=84)


@pytest.mark.parametrize(
    "root",
    [
        pytest.param(SHARED_OMNIGLOT, id="full-omniglot"),
        pytest.param(None, id="shipped-sample"),
    ],
)
def test_accuracy_well_above_chance_on_real_omniglot(
    lite0_84: nn.Module, root: Path | None
) -> None:
    if root is None:
        root = sample_root()
    elif not (root / "images_evaluation.zip").exists():
        pytest.skip(f"full Omniglot not found at {root} (the shared data folder is absent)")
    dataset = Omniglot(root, "test")
    sampler = EpisodeSampler(dataset.labels, ways=5, shots=1, queries=5, seed=0)
    episodes = [make_episode(dataset, s, lite0_84.preprocessing) for s in sampler.take(6)]
    for method in (SupportBasedInit(), TransductiveFineTuning(scope="head")):
        summary = evaluate(method, lite0_84, episodes).summary
        # chance is 20%; an ImageNet network on characters gets far above it
        assert summary["accuracy_mean"] > 0.5, (type(method).__name__, summary)
