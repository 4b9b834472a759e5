"""Batched head-scope methods on embeddings equal the one-episode-at-a-time methods."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anyshot.episodes import Episode
from anyshot.errors import ConfigurationError
from anyshot.methods import FineTuning, SupportBasedInit, TransductiveFineTuning
from anyshot.methods.batched import batched_head_finetuning, batched_support_init
from anyshot.methods.recommended import recommended_method

E, WAYS, SHOTS, QUERIES, DIM = 7, 4, 2, 5, 24


def random_episodes(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``support [E, S, D]``, shuffled ``targets [E, S]`` (every class), ``query [E, Q, D]``."""
    g = torch.Generator().manual_seed(seed)
    support = torch.randn(E, WAYS * SHOTS, DIM, generator=g)
    targets = torch.stack(
        [
            torch.arange(WAYS).repeat(SHOTS)[torch.randperm(WAYS * SHOTS, generator=g)]
            for _ in range(E)
        ]
    )
    query = torch.randn(E, WAYS * QUERIES, DIM, generator=g)
    return support, targets, query


def one_at_a_time(
    method: object, support: torch.Tensor, targets: torch.Tensor, query: torch.Tensor
) -> torch.Tensor:
    """``method`` on each episode as images ``[N, D, 1, 1]`` through ``nn.Flatten()``."""
    out = []
    for s, t, q in zip(support, targets, query, strict=True):
        episode = Episode(s[:, :, None, None], t.tolist(), q[:, :, None, None])
        out.append(method(nn.Flatten(), episode))  # type: ignore[operator]
    return torch.stack(out)


@pytest.mark.parametrize("relu", [True, False])
def test_support_init_matches(relu: bool) -> None:
    support, targets, query = random_episodes(1)
    method = SupportBasedInit(temperature=0.5, relu=relu)
    batched = batched_support_init(support, targets, query, method=method)
    assert batched.shape == (E, WAYS * QUERIES, WAYS)
    torch.testing.assert_close(
        batched, one_at_a_time(method, support, targets, query), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize(
    "method",
    [
        recommended_method(),
        TransductiveFineTuning(scope="head"),
        TransductiveFineTuning(
            scope="head", lr=1e-2, temperature=0.2, entropy_weight=0.5, relu=False
        ),
        FineTuning(scope="head", lr=1e-2, epochs=10, temperature=0.1),
    ],
    ids=["recommended", "paper-head", "entropy-norelu", "inductive"],
)
def test_head_finetuning_matches(method: FineTuning) -> None:
    support, targets, query = random_episodes(2)
    batched = batched_head_finetuning(method, support, targets, query)
    assert batched.shape == (E, WAYS * QUERIES, WAYS)
    reference = one_at_a_time(method, support, targets, query)
    # Summation order differs; a strong balance term (recommended: 3) amplifies it to ~2e-5.
    torch.testing.assert_close(batched, reference, atol=1e-4, rtol=0)
    # The training moved the logits away from the initialisation (the test is not vacuous).
    init = batched_support_init(
        support,
        targets,
        query,
        method=SupportBasedInit(temperature=method.temperature, relu=method.relu),
    )
    assert (batched - init).abs().max() > 1e-3


def test_lists_and_no_queries() -> None:
    support, targets, query = random_episodes(3)
    method = recommended_method()
    listed = batched_head_finetuning(method, list(support), list(targets), list(query))
    torch.testing.assert_close(listed, batched_head_finetuning(method, support, targets, query))
    chunked = batched_head_finetuning(method, support, targets, query, episodes_per_chunk=3)
    assert torch.equal(
        chunked[:3], batched_head_finetuning(method, support[:3], targets[:3], query[:3])
    )
    init = batched_support_init(support, targets, query)
    assert torch.equal(init, batched_support_init(support, targets, query, episodes_per_chunk=2))
    empty = batched_head_finetuning(method, support, targets, query[:, :0])
    assert empty.shape == (E, 0, WAYS)


def test_refusals() -> None:
    support, targets, query = random_episodes(4)
    method = recommended_method()
    with pytest.raises(ConfigurationError, match="fixed N-way K-shot"):
        batched_support_init(
            [support[0], support[1, :3]], [targets[0], targets[1, :3]], [query[0], query[1]]
        )
    missing = targets.clone()
    missing[2][missing[2] == 3] = 0
    with pytest.raises(ConfigurationError, match="episode 2 has no support row of class 3"):
        batched_head_finetuning(method, support, missing, query, ways=WAYS)
    with pytest.raises(ConfigurationError, match="scope='head'"):
        batched_head_finetuning(FineTuning(scope="last"), support, targets, query)
    with pytest.raises(ConfigurationError, match=r"\[E, S\]"):
        batched_support_init(support, targets[:, :3], query)
    with pytest.raises(ConfigurationError, match="integer"):
        batched_support_init(support, targets.float(), query)
    with pytest.raises(ConfigurationError, match="3-D"):
        batched_support_init(support[0], targets, query)
