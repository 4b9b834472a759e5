"""Adaptive class balance: the empirical-Bayes balance test and the two-run fine-tuning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from anyshot.backbones import build_backbone
from anyshot.episodes import Episode
from anyshot.methods import TransductiveFineTuning
from anyshot.methods.balance import CONCENTRATIONS, dirichlet_concentration, looks_balanced
from anyshot.methods.presets import UNGUARDED
from conftest import clustered_episode


def test_balance_test_on_class_counts() -> None:
    rng = np.random.default_rng(0)
    uniform = torch.tensor(rng.multinomial(75, [0.2] * 5, size=400), dtype=torch.float32)
    dirichlet_2 = torch.tensor(
        np.stack([rng.multinomial(75, rng.dirichlet([2.0] * 5)) for _ in range(400)]),
        dtype=torch.float32,
    )
    dirichlet_05 = torch.tensor(
        np.stack([rng.multinomial(75, rng.dirichlet([0.5] * 5)) for _ in range(400)]),
        dtype=torch.float32,
    )
    assert looks_balanced(uniform).shape == (400,)
    # Counts drawn from uniform proportions pass when no more spread than multinomial noise
    # (about 60% of them); Dirichlet-spread counts almost never do.
    assert 0.5 < float(looks_balanced(uniform).float().mean()) < 0.7
    assert float(looks_balanced(dirichlet_2).float().mean()) < 0.03
    assert float(looks_balanced(dirichlet_05).float().mean()) < 0.01
    # Exactly balanced sets with a few errors (what a good classifier predicts) pass.
    near = torch.tensor(15 + rng.integers(-2, 3, size=(100, 5)), dtype=torch.float32)
    assert bool(looks_balanced(near).all())
    assert bool(looks_balanced(torch.full((5,), 15.0)))
    assert not bool(looks_balanced(torch.tensor([30.0, 5.0, 20.0, 10.0, 10.0])))


def test_dirichlet_concentration() -> None:
    even = dirichlet_concentration(torch.full((5,), 15.0))
    assert float(even) == float(CONCENTRATIONS.max())
    skewed = dirichlet_concentration(torch.tensor([30.0, 5.0, 20.0, 10.0, 10.0]))
    assert float(skewed) < 10
    # Soft (fractional) counts and batches work; more even counts never get a smaller value.
    soft = torch.tensor([[20.5, 14.5, 15.0, 12.25, 12.75], [40.0, 20.0, 10.0, 4.0, 1.0]])
    values = dirichlet_concentration(soft)
    assert values.shape == (2,) and values[0] > values[1]


def _balanced_run(method: TransductiveFineTuning) -> TransductiveFineTuning:
    return dataclasses.replace(method, adaptive_balance=False)


def _unbalanced_run(method: TransductiveFineTuning) -> TransductiveFineTuning:
    return dataclasses.replace(method, adaptive_balance=False, balance_weight=0.0)


def test_adaptive_balance_uses_the_term_only_on_balanced_queries() -> None:
    method = UNGUARDED
    assert method.adaptive_balance and method.balance_weight > 0
    balanced = clustered_episode([6, 6, 6], seed=4)
    imbalanced = clustered_episode([24, 6, 2], seed=1)
    adaptive = method(nn.Flatten(), balanced)
    with_term = _balanced_run(method)(nn.Flatten(), balanced)
    without = _unbalanced_run(method)(nn.Flatten(), balanced)
    torch.testing.assert_close(adaptive, with_term, atol=0, rtol=0)
    assert not torch.allclose(with_term, without)  # the balance term does change the logits
    torch.testing.assert_close(
        method(nn.Flatten(), imbalanced),
        _unbalanced_run(method)(nn.Flatten(), imbalanced),
        atol=0,
        rtol=0,
    )


def test_adaptive_balance_decides_per_episode_in_a_batch() -> None:
    episodes = [
        clustered_episode(counts, seed=s)
        for s, counts in enumerate(([4, 4, 4], [8, 3, 1], [4, 4, 4], [1, 2, 9]))
    ]
    support = torch.stack([e.support.flatten(1) for e in episodes])
    targets = torch.stack([e.support_targets for e in episodes])
    query = torch.stack([e.query.flatten(1) for e in episodes])
    method = UNGUARDED
    batched = method.fit_features(support, targets, query).query_logits
    counts = torch.stack([torch.bincount(x.argmax(1), minlength=3) for x in batched])
    assert looks_balanced(counts).tolist() == [True, False, True, False]
    # balanced episodes got the second run with the term, the others kept the first run
    with_term = _balanced_run(method).fit_features(support, targets, query).query_logits
    without = _unbalanced_run(method).fit_features(support, targets, query).query_logits
    torch.testing.assert_close(batched[[0, 2]], with_term[[0, 2]], atol=0, rtol=0)
    torch.testing.assert_close(batched[[1, 3]], without[[1, 3]], atol=0, rtol=0)


@pytest.mark.parametrize(
    ("scope", "statistics"), [("last", "pretrained"), ("all", "batch"), ("all", "episode")]
)
def test_second_run_starts_from_the_initial_network(scope: str, statistics: str) -> None:
    """At scopes that train the network, the balanced run equals a plain run with the term."""
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.randn(3, 3, 16, 16, generator=generator)

    def images(k: int, n: int) -> torch.Tensor:
        return prototypes[k] + 0.3 * torch.randn(n, 3, 16, 16, generator=generator)

    episode = Episode(
        torch.cat([images(k, 1) for k in range(3)]),
        [0, 1, 2],
        torch.cat([images(k, 5) for k in range(3)]),
        [k for k in range(3) for _ in range(5)],
    )
    with torch.random.fork_rng():  # the set-up must not depend on the tests run before
        torch.manual_seed(0)
        backbone = build_backbone("conv4", channels=3, image_size=16)
    method = TransductiveFineTuning(
        scope=scope,
        epochs=3,
        lr=1e-3,
        temperature=0.1,
        center=True,
        balance_weight=1.0,
        adaptive_balance=True,
        augment=False,
        # at scope all, training-mode batch-norm also moves the stored statistics: the
        # second run must restore those buffers too
        norm_statistics=statistics,
    )
    adaptive = method.fit(backbone, episode)
    assert bool(looks_balanced(torch.bincount(adaptive.query_logits.argmax(1), minlength=3)))
    plain = _balanced_run(method).fit(backbone, episode)
    torch.testing.assert_close(adaptive.query_logits, plain.query_logits, atol=1e-5, rtol=0)
    assert adaptive.network is not None and plain.network is not None
    trained, reference = adaptive.network.state_dict(), plain.network.state_dict()
    assert trained.keys() == reference.keys()
    for name in trained:
        torch.testing.assert_close(trained[name], reference[name], atol=1e-5, rtol=0)
