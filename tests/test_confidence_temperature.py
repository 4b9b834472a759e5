"""Confidence temperatures: the calibration of the methods' softmax confidences (issue 17).

A method's ``confidence_temperature`` (and, for fine-tuning, ``fallback_temperature`` for the
episodes the guard hands to support-init) divides its final logits: the predictions stay, the
confidences change, and every way of reading the logits (query logits, the fitted classifiers,
a saved model) agrees."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from anyshot.backbones import build_backbone
from anyshot.calibration import expected_calibration_error
from anyshot.episodes import Episode
from anyshot.errors import ConfigurationError
from anyshot.methods import SupportBasedInit, TransductiveFineTuning
from anyshot.methods.presets import RECOMMENDED, SUPPORT_INIT
from anyshot.methods.registry import method_from_dict, method_to_dict
from test_safe_head import FORCED, _image_episode, _mixed_batch, nuisance_episodes


def _check_calibrated(method: TransductiveFineTuning, rows: tuple[torch.Tensor, ...]) -> None:
    """``method`` (tau 2 when trained, 0.4 when support-init answers) against the same
    method uncalibrated, on ``(support, targets, query)``: the logits are divided per episode,
    the predictions stay, and the fitted classifiers and chunking agree."""
    support, targets, query = rows
    plain = dataclasses.replace(method, confidence_temperature=1.0, fallback_temperature=1.0)
    calibrated = dataclasses.replace(method, confidence_temperature=2.0, fallback_temperature=0.4)
    before = plain.fit_features(support, targets, query)
    fitted = calibrated.fit_features(support, targets, query)
    assert fitted.fallback is not None and fitted.gated is not None
    assert before.fallback is not None and fitted.fallback.tolist() == before.fallback.tolist()
    assert torch.equal(fitted.query_logits.argmax(-1), before.query_logits.argmax(-1))
    tau = torch.where(fitted.fallback & ~fitted.gated, 0.4, 2.0)[:, None, None]
    torch.testing.assert_close(fitted.query_logits, before.query_logits / tau)
    torch.testing.assert_close(fitted.logits(query), fitted.query_logits, atol=1e-4, rtol=0)
    for e in range(len(query)):  # the classifier a model file stores
        with torch.no_grad():
            row_logits = fitted.classifier(e)(query[e])
        torch.testing.assert_close(row_logits, fitted.query_logits[e], atol=1e-4, rtol=0)
    alone = calibrated.fit_features(support, targets, query, episodes_per_chunk=1)
    torch.testing.assert_close(alone.query_logits, fitted.query_logits)


def test_temperatures_divide_the_logits_per_episode_and_keep_the_predictions() -> None:
    # 4 ways, 1 shot, 8 queries: 2 of each class in episodes 0-2 (the gate: the inductive
    # head, a trained head), 8 of one class in episodes 3-5 (at least one trained)
    spread = nuisance_episodes(3, 4, 4, 2, seed=1)
    one_class = nuisance_episodes(3, 4, 1, 8, seed=2)
    support, targets, query, _ = (torch.cat(pair) for pair in zip(spread, one_class, strict=True))
    gated = RECOMMENDED.fit_features(support, targets, query).gated
    assert gated is not None and gated[:3].all() and not gated.all()  # the set-up
    _check_calibrated(RECOMMENDED, (support, targets, query))
    # the guard answers episode 1 with support-init (see test_safe_head): tau 0.4 there only
    forced = dataclasses.replace(FORCED, min_agreement=0.5)
    mixed = _mixed_batch()
    guarded = forced.fit_features(*mixed)
    assert guarded.fallback is not None and guarded.fallback.tolist() == [False, True, False]
    _check_calibrated(forced, mixed)
    fitted = dataclasses.replace(forced, confidence_temperature=2.0).fit_features(*mixed)
    assert fitted.temperatures().tolist() == pytest.approx([0.2, 0.1, 0.2])  # T tau


def test_support_init_confidence_temperature_keeps_the_predictions() -> None:
    support, targets, query, _ = nuisance_episodes(3, 5, 5, 6, seed=3)
    plain = SupportBasedInit(temperature=0.1).fit_features(support, targets, query)
    fitted = SUPPORT_INIT.fit_features(support, targets, query)
    assert torch.equal(fitted.query_logits.argmax(-1), plain.query_logits.argmax(-1))
    torch.testing.assert_close(
        fitted.query_logits, plain.query_logits / SUPPORT_INIT.confidence_temperature
    )


def _more_shots(
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor], shots: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The one-shot episodes ``rows`` with each support row ``shots`` times: the same class
    means, ``shots`` labelled rows per class."""
    support, targets, query = rows
    return support.repeat_interleave(shots, 1), targets.repeat_interleave(shots, 1), query


def test_support_init_tau_falls_with_the_shots() -> None:
    one_shot = nuisance_episodes(3, 5, 5, 6, seed=3)[:3]
    plain = SupportBasedInit(temperature=0.1).fit_features(*one_shot)
    assert SUPPORT_INIT.confidence_shots_power < 0
    for shots in (1, 4):
        fitted = SUPPORT_INIT.fit_features(*_more_shots(one_shot, shots))
        tau = SUPPORT_INIT.confidence_temperature * shots**SUPPORT_INIT.confidence_shots_power
        assert SUPPORT_INIT.confidence_tau(shots) == pytest.approx(tau)
        # the same class means: the same cosines, divided by a smaller tau at 4 shots
        torch.testing.assert_close(fitted.query_logits, plain.query_logits / tau)


def test_the_guards_answers_carry_support_inits_confidences_at_any_shots() -> None:
    forced = dataclasses.replace(
        FORCED,
        min_agreement=0.5,
        fallback_temperature=RECOMMENDED.fallback_temperature,
        fallback_shots_power=RECOMMENDED.fallback_shots_power,
    )
    assert RECOMMENDED.fallback_shots_power == SUPPORT_INIT.confidence_shots_power != 0
    for shots in (1, 3):
        rows = _more_shots(_mixed_batch(), shots)
        guarded = forced.fit_features(*rows)
        assert guarded.fallback is not None and guarded.fallback.tolist() == [False, True, False]
        alone = SUPPORT_INIT.fit_features(*rows)
        torch.testing.assert_close(guarded.query_logits[1], alone.query_logits[1])


def test_calibrated_support_init_has_a_lower_calibration_error() -> None:
    # one-shot episodes of elongated, shifted classes: at T = 0.1 the cosine logits are too
    # flat (support-init is under-confident, as on mini-ImageNet and Omniglot val)
    support, targets, query, query_targets = nuisance_episodes(40, 5, 5, 15, seed=4, spread=1.0)

    def ece(method: SupportBasedInit) -> float:
        probabilities = method.fit_features(support, targets, query).query_logits.softmax(-1)
        correct = probabilities.argmax(-1) == query_targets
        return expected_calibration_error(probabilities.amax(-1), correct)

    uncalibrated = ece(dataclasses.replace(SUPPORT_INIT, confidence_temperature=1.0))
    assert ece(SUPPORT_INIT) < uncalibrated - 0.1  # 0.36 -> 0.20


def _network_setting() -> tuple[torch.nn.Module, TransductiveFineTuning]:
    """A seeded 16 px conv4 and fine-tuning at scope ``last`` whose gate hands an episode of
    fewer than 2 queries per class to support-init."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        backbone = build_backbone("conv4", channels=3, image_size=16)
    method = TransductiveFineTuning(
        scope="last", epochs=3, lr=0.01, temperature=0.1, augment=False, min_queries_per_class=2.0
    )
    return backbone, method


def test_network_scopes_calibrate_the_trained_and_the_fallen_back_classifier() -> None:
    backbone, method = _network_setting()
    calibrated = dataclasses.replace(method, confidence_temperature=2.0, fallback_temperature=0.5)
    for queries, tau in (([1, 0, 0], 0.5), ([4, 4, 4], 2.0)):  # gated, trained
        episode = _image_episode(queries)
        plain, fitted = method.fit(backbone, episode), calibrated.fit(backbone, episode)
        torch.testing.assert_close(fitted.query_logits, plain.query_logits / tau)
        assert fitted.network is not None
        fitted.network.eval()
        with torch.no_grad():
            rows = fitted.network(episode.query)
            torch.testing.assert_close(
                fitted.classifier(rows), fitted.query_logits, atol=1e-4, rtol=0
            )


def test_network_scopes_give_the_fallen_back_classifier_the_tau_of_its_shots() -> None:
    backbone, method = _network_setting()
    calibrated = dataclasses.replace(method, fallback_temperature=0.5, fallback_shots_power=-0.5)
    one_shot = _image_episode([1, 0, 0])  # one query: the gate hands it to support-init
    two_shots = Episode(
        one_shot.support.repeat(2, 1, 1, 1), [0, 1, 2, 0, 1, 2], one_shot.query, [0]
    )
    plain, fitted = method.fit(backbone, two_shots), calibrated.fit(backbone, two_shots)
    assert fitted.fallback is not None
    torch.testing.assert_close(fitted.query_logits, plain.query_logits / (0.5 * 2**-0.5))


def test_network_scopes_give_the_trained_classifier_the_tau_of_its_shots() -> None:
    backbone, method = _network_setting()
    calibrated = dataclasses.replace(method, confidence_temperature=1.5, confidence_shots_power=0.5)
    episode = _image_episode([4, 4, 4])  # enough queries: the network trains
    two_shots = Episode(
        episode.support.repeat(2, 1, 1, 1), [0, 1, 2, 0, 1, 2], episode.query, episode.query_labels
    )
    plain, fitted = method.fit(backbone, two_shots), calibrated.fit(backbone, two_shots)
    assert fitted.fallback is None
    torch.testing.assert_close(fitted.query_logits, plain.query_logits / (1.5 * 2**0.5))


def test_the_registry_round_trips_the_temperatures() -> None:
    for method in (RECOMMENDED, SUPPORT_INIT):
        assert method_from_dict(method_to_dict(method)) == method
    assert RECOMMENDED.fallback_temperature == SUPPORT_INIT.confidence_temperature != 1.0
    assert RECOMMENDED.fallback_shots_power == SUPPORT_INIT.confidence_shots_power != 0.0
    # settings saved before the shots' powers existed: 0, the same tau at any shots (as then)
    for method, field in (
        (RECOMMENDED, "fallback_shots_power"),
        (SUPPORT_INIT, "confidence_shots_power"),
    ):
        saved = method_to_dict(method)
        del saved["settings"][field]
        assert getattr(method_from_dict(saved), field) == 0.0


@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan")])
def test_temperatures_must_be_positive_numbers(value: float) -> None:
    with pytest.raises(ConfigurationError, match="confidence_temperature"):
        SupportBasedInit(confidence_temperature=value)
    with pytest.raises(ConfigurationError, match="fallback_temperature"):
        TransductiveFineTuning(fallback_temperature=value)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_shots_powers_must_be_finite(value: float) -> None:
    with pytest.raises(ConfigurationError, match="confidence_shots_power"):
        SupportBasedInit(confidence_shots_power=value)
    with pytest.raises(ConfigurationError, match="fallback_shots_power"):
        TransductiveFineTuning(fallback_shots_power=value)
