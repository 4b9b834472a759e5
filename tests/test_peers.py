"""benchmarks/peers.py: every peer classifies separable clusters, batches exactly, stays
deterministic without touching the global RNG, and runs under inference mode."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

PEERS_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peers", PEERS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peers = _load()
NAMES = sorted(peers.PEERS)


@pytest.fixture(scope="module")
def episodes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three 5-way 1-shot episodes, 15 queries per class, of 512-d non-negative clusters."""
    return peers.gaussian_episodes(3, 5, 1, 15, 512, seed=1, spread=1.5)


@pytest.fixture(scope="module")
def batched(
    episodes: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
) -> dict[str, torch.Tensor]:
    support, targets, query, _ = episodes
    return {name: peers.PEERS[name](support, targets, query, 5) for name in NAMES}


def test_the_peers_are_the_five_named() -> None:
    assert set(peers.PEERS) == {"tim", "alpha-tim", "paddle", "bd-cspn"}


@pytest.mark.parametrize("name", NAMES)
def test_peer_beats_chance_on_clusters(
    name: str,
    episodes: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    batched: dict[str, torch.Tensor],
) -> None:
    scores = batched[name]
    assert scores.shape == (3, 75, 5)
    assert torch.isfinite(scores).all()
    assert peers.accuracy(scores, episodes[3]) > 60.0  # chance is 20


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_single_episodes(
    name: str,
    episodes: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    batched: dict[str, torch.Tensor],
) -> None:
    support, targets, query, _ = episodes
    rng_before = torch.get_rng_state()
    method = peers.PEERS[name]
    if name == "alpha-tim":  # the property does not depend on the step count: fewer, for time
        method = functools.partial(peers.alpha_tim, steps=100)
        reference = method(support, targets, query, 5)
    else:
        reference = batched[name]
    single = method(support[1:2], targets[1:2], query[1:2], 5)
    torch.testing.assert_close(single[0], reference[1], rtol=0, atol=1e-5)
    assert torch.equal(torch.get_rng_state(), rng_before)


@pytest.mark.parametrize("name", ["tim", "bd-cspn", "paddle"])
def test_same_result_under_inference_mode(
    name: str,
    episodes: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    batched: dict[str, torch.Tensor],
) -> None:
    support, targets, query, _ = episodes
    with torch.inference_mode():
        scores = peers.PEERS[name](support[:1], targets[:1], query[:1], 5)
    assert torch.equal(scores, batched[name][:1])


def test_paddle_returns_log_soft_assignments(batched: dict[str, torch.Tensor]) -> None:
    total = batched["paddle"].exp().sum(-1)
    torch.testing.assert_close(total, torch.ones_like(total))


def test_bd_cspn_eps_changes_only_the_weights(
    episodes: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    """eps = 1 (easyfsl's exp(cos) weights) gives other prototypes, cosine logits reported."""
    support, targets, query, _ = episodes
    soft = peers.bd_cspn(support, targets, query, 5, eps=1.0)
    assert soft.abs().max() <= 1.0 + 1e-5
    assert not torch.allclose(soft * 10.0, peers.bd_cspn(support, targets, query, 5))


@pytest.mark.parametrize("name", NAMES)
def test_no_queries(
    name: str, episodes: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
) -> None:
    support, targets, query, _ = episodes
    assert peers.PEERS[name](support, targets, query[:, :0], 5).shape == (3, 0, 5)
