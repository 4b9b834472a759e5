"""Episode hardness: hand-computed values, monotonicity, the cached model, the evaluate hook."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from anyshot.data.dataset import ImageDataset
from anyshot.data.images import Preprocessing
from anyshot.data.omniglot import Omniglot, sample_root
from anyshot.episodes import Episode, EpisodeSampler
from anyshot.evaluation import evaluate
from anyshot.hardness import (
    HardnessModel,
    area_under_line,
    embedding_hardness,
    episode_hardness,
    fit_accuracy_line,
)
from anyshot.methods import SupportBasedInit


def test_hardness_by_hand_from_probabilities_and_logits() -> None:
    # p(y|x) = 0.5, 0.8, 0.1 -> log-odds against: log 1 = 0, log(0.2/0.8), log(0.9/0.1)
    probs = torch.tensor([[0.5, 0.5], [0.8, 0.2], [0.1, 0.9]])
    targets = torch.tensor([0, 0, 0])
    expected = (0.0 + math.log(0.25) + math.log(9.0)) / 3  # = 0.270310...
    assert episode_hardness(probs, targets, probabilities=True) == pytest.approx(expected)
    logits = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0], [0.0, math.log(9.0)]])
    assert episode_hardness(logits, targets) == pytest.approx(expected)


def test_hardness_clamps_certain_predictions() -> None:
    certain = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert episode_hardness(certain, torch.tensor([0, 0]), probabilities=True) == pytest.approx(
        0.0, abs=1e-9
    )  # -13.8 and +13.8
    assert episode_hardness(certain, torch.tensor([0, 1]), probabilities=True) == pytest.approx(
        math.log(1e-6 / (1 - 1e-6)), rel=1e-6
    )
    with pytest.raises(ValueError, match="at least one query"):
        episode_hardness(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


def test_embedding_hardness_by_hand() -> None:
    # class means e1, e2; cosine logits with T = 1 differ by exactly 1 for the axis queries,
    # so the log-odds against the true class are -1 (query on its own axis), +1 (on the other
    # axis) and 0 (on the diagonal): mean 0. With 2 classes log((1-p)/p) = z_other - z_true.
    support = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    query = torch.tensor([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0], [5.0, 0.0]])
    value = embedding_hardness(
        support, torch.tensor([0, 1, 0]), query, torch.tensor([0, 0, 0, 0]), 2
    )
    assert value == pytest.approx((-1.0 + 1.0 + 0.0 - 1.0) / 4)


def synthetic_hardness(spread: float, seed: int) -> float:
    """Hardness of a 5-way 5-shot episode whose class means lie ``spread`` apart (positive)."""
    generator = torch.Generator().manual_seed(seed)
    ways, shots, queries, dim = 5, 5, 10, 32
    means = 1.0 + spread * torch.eye(ways, dim)  # positive, so the ReLU keeps everything

    def draw(n: int) -> torch.Tensor:
        return means.repeat_interleave(n, 0) + 0.3 * torch.rand(ways * n, dim, generator=generator)

    support, query = draw(shots), draw(queries)
    return embedding_hardness(
        support,
        torch.arange(ways).repeat_interleave(shots),
        query,
        torch.arange(ways).repeat_interleave(queries),
        ways,
    )


def test_closer_class_means_are_harder() -> None:
    values = [np.mean([synthetic_hardness(s, seed) for seed in range(5)]) for s in (4, 1, 0.25)]
    assert values[0] < values[1] < values[2]


class Squares(ImageDataset):
    """Tiny in-memory images: class k is a grey square of brightness 40 k (+ item jitter)."""

    def __init__(self, classes: int = 4, per_class: int = 6) -> None:
        super().__init__(
            [f"c{k}" for k in range(classes)], np.repeat(np.arange(classes), per_class)
        )

    def source(self, index: int) -> str:
        return f"mem/{self.check_index(index)}"

    def image(self, index: int) -> Image.Image:
        value = 40 * int(self.labels[self.check_index(index)]) + index % 6
        return Image.new("RGB", (8, 8), (value, 255 - value, value // 2))


class CountingNet(nn.Module):
    """Mean colour per channel as a 3-d embedding; counts the images it has embedded."""

    def __init__(self) -> None:
        super().__init__()
        self.preprocessing = Preprocessing(8, 3)
        self.seen = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen += images.shape[0]
        return images.mean(dim=(2, 3)) + 1.0


def test_hardness_model_caches_embeddings_per_image() -> None:
    dataset = Squares()
    net = CountingNet()
    model = HardnessModel(dataset, net)
    specs = list(EpisodeSampler(dataset.labels, ways=3, shots=2, queries=2, seed=0).take(10))
    values = [model(spec) for spec in specs]
    used = {i for s in specs for part in (*s.support, *s.query) for i in part}
    assert net.seen == len(used) == len(model)  # every image embedded exactly once
    spec = specs[0]
    support = [i for part in spec.support for i in part]
    query = [i for part in spec.query for i in part]
    by_hand = embedding_hardness(
        net(dataset.load_batch(support, net.preprocessing)),
        torch.tensor([0, 0, 1, 1, 2, 2]),
        net(dataset.load_batch(query, net.preprocessing)),
        torch.tensor([0, 0, 1, 1, 2, 2]),
        3,
    )
    assert values[0] == pytest.approx(by_hand, abs=1e-6)
    assert model.config()["relu"] is True and model.config()["temperature"] == 1.0


def test_hardness_with_the_default_imagenet_model_on_real_omniglot() -> None:
    dataset = Omniglot(sample_root(), "test")
    model = HardnessModel(dataset, image_size=64)
    assert model.config()["model"] == "efficientnet-lite0 (logits)"
    spec = EpisodeSampler(dataset.labels, ways=5, shots=1, queries=2, seed=0).sample(0)
    value = model(spec)
    # 5 ways, T = 1: |logit differences| <= 2, so Omega lies within log(4) +- 2
    assert math.isfinite(value) and math.log(4) - 2 <= value <= math.log(4) + 2


def test_evaluate_stores_the_hook_value() -> None:
    support = torch.eye(3)[:, :, None, None]
    episodes = [Episode(support, ["a", "b", "c"], support, ["a", "b", "c"]) for _ in range(3)]
    result = evaluate(
        SupportBasedInit(), nn.Flatten(), episodes, hardness=lambda index, episode: index / 2
    )
    assert [r["hardness"] for r in result.records] == [0.0, 0.5, 1.0]
    assert "hardness" not in evaluate(SupportBasedInit(), nn.Flatten(), episodes).records[0]


def test_line_fit_and_area_under_it() -> None:
    hardness = np.array([0.5, 1.0, 2.0, 3.0])
    fit = fit_accuracy_line(hardness, 90.0 - 20.0 * hardness)
    assert fit.slope == pytest.approx(-20.0) and fit.intercept == pytest.approx(90.0)
    # triangle under y = 90 - 20 x: base 90 / 20 = 4.5, height 90, area 4.5 * 90 / 2
    assert fit.area == pytest.approx(202.5) and fit.note == "" and fit.points == 4
    area, note = area_under_line(50.0, 10.0)
    assert math.isnan(area) and "slope >= 0" in note
    area, note = area_under_line(-5.0, -1.0)
    assert math.isnan(area) and "intercept <= 0" in note
    flat = fit_accuracy_line([1.0, 1.0], [50.0, 60.0])
    assert math.isnan(flat.area) and "distinct" in flat.note
