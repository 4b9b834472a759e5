"""The query log-likelihood term, the class proportions it estimates, and episode centring."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from anyshot.episodes import Episode
from anyshot.errors import ConfigurationError
from anyshot.methods import TransductiveFineTuning
from anyshot.methods.cosine import CosineClassifier, episode_center, unit_embeddings
from anyshot.methods.objective import MIN_PROPORTION, estimated_log_prior
from anyshot.methods.presets import RECOMMENDED
from conftest import clustered_episode


def accuracy(logits: torch.Tensor, episode: Episode) -> float:
    assert episode.query_targets is not None
    return float((logits.argmax(1) == episode.query_targets).float().mean())


def test_estimated_log_prior_is_the_smoothed_proportion() -> None:
    responsibilities = torch.tensor([6.0, 3.0, 1.0, 0.0])
    log_pi = estimated_log_prior(responsibilities, n_query=10, prior_count=2.0)
    expected = torch.tensor([8.0, 5.0, 3.0, 2.0]) / 18.0
    torch.testing.assert_close(log_pi.exp(), expected)
    # Maximum likelihood (no pseudo-count) floors an empty class instead of log(0) = -inf.
    ml = estimated_log_prior(responsibilities, n_query=10, prior_count=0.0).exp()
    assert torch.isfinite(ml.log()).all()
    assert ml[3] == pytest.approx(MIN_PROPORTION, rel=1e-3)
    assert float(ml.sum()) == pytest.approx(1.0)
    # A huge pseudo-count gives the uniform prior; batches of episodes work row by row.
    flat = estimated_log_prior(responsibilities.expand(3, 4), n_query=10, prior_count=1e9)
    torch.testing.assert_close(flat.exp(), torch.full((3, 4), 0.25))


def test_learned_proportions_follow_imbalanced_queries() -> None:
    episode = clustered_episode([24, 6, 2], seed=1)
    assert RECOMMENDED.prior_count == 0  # maximum likelihood: free to follow the data
    fitted = RECOMMENDED.fit(nn.Flatten(), episode)
    # the bias is log pi / tau (the calibration divides the logits): T / 0.1 is tau
    tau = fitted.classifier.temperature / RECOMMENDED.temperature
    proportions = (fitted.classifier.bias.detach() * tau).exp()
    assert float(proportions.sum()) == pytest.approx(1.0, abs=1e-5)
    # The estimate ranks the classes as the queries do (24 > 6 > 2 of 32).
    assert proportions[0] > proportions[1] > proportions[2]
    assert float(proportions[0]) > 0.5


def test_fitted_classifier_reproduces_the_query_logits() -> None:
    """centre, unit class directions and log-proportions all live in the returned classifier."""
    episode = clustered_episode([5, 5, 5], seed=2)
    # 15 queries for 3 classes: too few for the default's gate; the trained head is tested here
    method = dataclasses.replace(RECOMMENDED, min_queries_per_class=0.0, queries_per_shot=0.0)
    fitted = method.fit(nn.Flatten(), episode)
    classifier = fitted.classifier
    assert classifier.normalize_weight and classifier.center is not None
    assert not classifier.bias.requires_grad
    embeddings = torch.cat([episode.support, episode.query]).flatten(1)
    torch.testing.assert_close(classifier.center, episode_center(embeddings[None])[0, 0])
    with torch.no_grad():
        again = classifier(episode.query.flatten(1))
    torch.testing.assert_close(again, fitted.query_logits)


def test_centring_removes_the_shared_direction() -> None:
    episode = clustered_episode([5, 5, 5], seed=3, shift=6.0)
    embeddings = torch.cat([episode.support, episode.query]).flatten(1)
    raw = unit_embeddings(embeddings)
    centred = unit_embeddings(embeddings, center=episode_center(embeddings[None])[0, 0])
    assert torch.allclose(centred.norm(dim=1), torch.ones(len(centred)))
    # Pairwise cosines of different-class rows drop once the common component is gone.
    targets = torch.cat([episode.support_targets, episode.query_targets])  # type: ignore[list-item]
    different = targets[:, None] != targets[None, :]
    assert float((raw @ raw.T)[different].mean()) > 0.5
    assert float((centred @ centred.T)[different].mean()) < 0.2


def test_recommended_settings_and_refusals() -> None:
    method = RECOMMENDED
    assert method.transductive and method.scope == "head"
    with pytest.raises(ConfigurationError, match="prior_count"):
        TransductiveFineTuning(prior_count=-1.0)
    with pytest.raises(ConfigurationError, match="likelihood_weight"):
        TransductiveFineTuning(likelihood_weight=-0.5)
    with pytest.raises(ValueError, match=r"\[D\]"):
        CosineClassifier(torch.eye(3), center=torch.zeros(4))
    assert math.isclose(RECOMMENDED.likelihood_weight, 0.2) and RECOMMENDED.center
