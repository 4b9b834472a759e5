"""The default's calibration rule (issue 17): a trained episode's logits are divided by
``tau = confidence_temperature * shots ** b * exp(c * s + d * h)``, ``s`` the mean cosine
between the support's class means, ``h`` the head's mean uncalibrated confidence on the queries,
so episodes whose classes look alike to the backbone (Omniglot through an ImageNet network) get
softer confidences than well-separated ones (mini-ImageNet), and the predictions never change."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from anyshot.errors import ConfigurationError
from anyshot.methods import TransductiveFineTuning
from anyshot.methods.features import episode_rows
from anyshot.methods.finetune import QUERYLESS_CONFIDENCE
from anyshot.methods.presets import RECOMMENDED
from test_safe_head import AS_TRAINED, nuisance_episodes

RULE_FREE = AS_TRAINED  # the default without its calibration


def _similarity(support: torch.Tensor) -> torch.Tensor:
    """``[E, K, D]`` one row per class -> ``[E]`` mean cosine between different rows (the
    rectified rows, as the head sees them), written out pair by pair."""
    unit = F.normalize(F.relu(support), dim=-1)
    ways = support.shape[1]
    pairs = [(a, b) for a in range(ways) for b in range(ways) if a != b]
    return torch.stack([(unit[:, a] * unit[:, b]).sum(-1) for a, b in pairs], 1).mean(1)


def test_the_rule_keeps_the_predictions_and_softens_episodes_whose_classes_look_alike() -> None:
    # 5 ways, 1 shot, 15 queries per class (trained, not gated); a large shared shift makes
    # every class mean point the same way (classes alike), a small one keeps them apart
    apart = nuisance_episodes(3, 5, 5, 15, seed=5, shift=0.5)
    alike = nuisance_episodes(3, 5, 5, 15, seed=5, shift=6.0)
    support, targets, query, _ = (torch.cat(pair) for pair in zip(apart, alike, strict=True))
    plain = RULE_FREE.fit_features(support, targets, query)
    fitted = RECOMMENDED.fit_features(support, targets, query)
    assert fitted.fallback is not None and not fitted.fallback.any()  # every episode trained
    assert torch.equal(fitted.query_logits.argmax(-1), plain.query_logits.argmax(-1))

    similarity = _similarity(support)
    assert similarity[3:].min() > similarity[:3].max() + 0.3  # the set-up
    confidence = plain.query_logits.double().softmax(-1).amax(-1).mean(1)
    tau = RECOMMENDED.confidence_temperature * torch.exp(
        RECOMMENDED.confidence_similarity_slope * similarity
        + RECOMMENDED.confidence_query_slope * confidence
    )
    torch.testing.assert_close(
        fitted.query_logits, plain.query_logits / tau[:, None, None].float(), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        fitted.temperatures(), RECOMMENDED.temperature * tau.double(), rtol=1e-5, atol=0
    )
    # softer where the classes look alike: the confidences fall by more there
    drop = plain.query_logits.softmax(-1).amax(-1).mean(1) - fitted.query_logits.softmax(-1).amax(
        -1
    ).mean(1)
    assert drop[3:].min() > drop[:3].max()


def test_more_shots_of_the_same_class_means_lower_tau() -> None:
    support, targets, query, _ = nuisance_episodes(2, 5, 5, 3, seed=6)
    one = episode_rows(support, targets, query)
    # every support row three times: the same class means, three shots
    three = episode_rows(support.repeat(1, 3, 1), targets.repeat(1, 3), query)
    ratio = RECOMMENDED.confidence_temperatures(three) / RECOMMENDED.confidence_temperatures(one)
    expected = 3.0**RECOMMENDED.confidence_shots_power
    torch.testing.assert_close(ratio, torch.full((2,), expected, dtype=torch.float64))
    assert RECOMMENDED.confidence_shots_power < 0


def test_without_the_rule_tau_is_the_confidence_temperature() -> None:
    support, targets, query, _ = nuisance_episodes(2, 4, 4, 2, seed=7)
    method = TransductiveFineTuning(scope="head", confidence_temperature=1.7)
    tau = method.confidence_temperatures(episode_rows(support, targets, query))
    assert tau.tolist() == pytest.approx([1.7, 1.7])
    assert math.isclose(
        RULE_FREE.confidence_temperatures(episode_rows(support, targets, query))[0], 1.0
    )


def test_a_more_confident_head_gets_a_higher_tau_and_no_queries_a_fixed_confidence() -> None:
    support, targets, _, _ = nuisance_episodes(2, 5, 5, 3, seed=8)
    rows = episode_rows(support, targets, torch.zeros(2, 0, support.shape[-1]))
    sure = torch.tensor([[[9.0, 0, 0, 0, 0]], [[1.0, 0, 0, 0, 0]]])  # [E=2, Q=1, K=5]
    tau = RECOMMENDED.confidence_temperatures(rows, sure)
    assert tau[0] > tau[1]  # episode 0's head is the more confident
    h = sure.double().softmax(-1).amax(-1).squeeze(1)
    ratio = math.exp(RECOMMENDED.confidence_query_slope * float(h[0] - h[1]))
    similarity = _similarity(support)
    ratio *= math.exp(
        RECOMMENDED.confidence_similarity_slope * float(similarity[0] - similarity[1])
    )
    assert float(tau[0] / tau[1]) == pytest.approx(ratio, rel=1e-5)
    without = RECOMMENDED.confidence_temperatures(rows)  # no queries: h = QUERYLESS_CONFIDENCE
    expected = RECOMMENDED.confidence_temperature * torch.exp(
        RECOMMENDED.confidence_similarity_slope * similarity.double()
        + RECOMMENDED.confidence_query_slope * QUERYLESS_CONFIDENCE
    )
    torch.testing.assert_close(without, expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    "field", ["confidence_shots_power", "confidence_similarity_slope", "confidence_query_slope"]
)
def test_the_rule_needs_finite_numbers(field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        TransductiveFineTuning(**{field: float("nan")})
