"""Unbalanced supports: every class weighs the same in the support cross-entropy
(``balanced_support``), and a support of equally many images per class is trained as before."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from anyshot.methods import FineTuning
from anyshot.methods.objective import class_balanced_weights, support_loss
from anyshot.methods.presets import RECOMMENDED


def test_weights_give_each_class_the_same_total_and_average_one_per_image() -> None:
    targets = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])  # one unbalanced episode, one balanced
    weights = class_balanced_weights(targets, 2)
    assert weights is not None
    assert torch.allclose(weights[0], torch.tensor([2.0, 2.0 / 3.0]))
    assert torch.allclose(weights[1], torch.ones(2))  # a balanced episode of the batch
    per_image = weights.gather(-1, targets)
    assert torch.allclose(per_image.mean(-1), torch.ones(2))
    counts = F.one_hot(targets, 2).sum(-2).float()
    assert torch.allclose(weights * counts, torch.full((2, 2), 2.0))  # S / K per class
    assert class_balanced_weights(torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0]]), 2) is None


def test_weighted_loss_is_the_mean_over_classes_of_each_class_s_mean_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 3, generator=generator)
    targets = torch.tensor([0, 1, 1, 1, 2, 2, 2])
    weights = class_balanced_weights(targets, 3)
    losses = F.cross_entropy(logits, targets, reduction="none")
    per_class = torch.stack([losses[targets == k].mean() for k in range(3)])
    assert torch.allclose(support_loss(logits, targets, 7, weights), per_class.mean())
    # chunks of the support add up to the whole (the network scopes train in chunks)
    chunks = support_loss(logits[:3], targets[:3], 7, weights)
    chunks = chunks + support_loss(logits[3:], targets[3:], 7, weights)
    assert torch.allclose(chunks, per_class.mean())


def unbalanced_rows(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two overlapping classes, one labelled image of class 0 against 20 of class 1, and 40
    balanced queries: support ``[1, 21, D]``, targets ``[1, 21]``, queries ``[1, 40, D]``,
    query targets ``[40]``."""
    generator = torch.Generator().manual_seed(seed)
    dim = 16
    centres = torch.randn(2, dim, generator=generator)
    centres[1] = centres[0] + 0.9 * torch.randn(dim, generator=generator)
    draw = lambda k, n: (centres[k] + 0.6 * torch.randn(n, dim, generator=generator)).relu()  # noqa: E731
    support = torch.cat([draw(0, 1), draw(1, 20)])[None]
    targets = torch.tensor([0] + [1] * 20)[None]
    query = torch.cat([draw(0, 20), draw(1, 20)])[None]
    return support, targets, query, torch.tensor([0] * 20 + [1] * 20)


def test_a_class_of_one_image_is_not_learnt_as_rare() -> None:
    """The inductive head (no query term) of a 1 + 20 support: without the weights it predicts
    the rare class for fewer of its own queries; with them, for more, over 10 draws."""
    recalls = {}
    for balanced in (False, True):
        method = FineTuning(scope="head", epochs=25, lr=1e-2, temperature=0.1,
                            balanced_support=balanced)  # fmt: skip
        hits = 0
        for seed in range(10):
            support, targets, query, truth = unbalanced_rows(seed)
            logits = method.fit_features(support, targets, query, ways=2).query_logits[0]
            hits += int((logits.argmax(-1)[truth == 0] == 0).sum())
        recalls[balanced] = hits / 200
    assert recalls[True] > recalls[False] + 0.05, recalls


def test_the_default_uses_it_and_a_balanced_support_is_trained_exactly_as_before() -> None:
    assert RECOMMENDED.balanced_support and RECOMMENDED.head_training.balanced_support
    assert RECOMMENDED.inductive().balanced_support  # about the labelled images: kept
    support, _, query, _ = unbalanced_rows(0)
    support = torch.cat([support[:, :1].repeat(1, 5, 1), support[:, 1:6]], dim=1)  # 5 + 5
    targets = torch.tensor([[0] * 5 + [1] * 5])
    without = dataclasses.replace(RECOMMENDED, balanced_support=False)
    a = RECOMMENDED.fit_features(support, targets, query, ways=2).query_logits
    b = without.fit_features(support, targets, query, ways=2).query_logits
    assert torch.equal(a, b)


@pytest.mark.parametrize("scope", ["last", "all"])
def test_the_network_scopes_weigh_the_classes_too(scope: str) -> None:
    """The network scopes' support step carries the weights of the whole support into every
    chunk: an unbalanced support trains to other logits with them than without, and to the
    same logits in chunks of 4 as in one chunk (weights per chunk would differ); a balanced
    support trains to the same logits with or without them."""
    from anyshot.backbones import build_backbone
    from anyshot.episodes import Episode

    torch.manual_seed(0)
    backbone = build_backbone("conv4", image_size=16)
    images = torch.rand(14, 3, 16, 16, generator=torch.Generator().manual_seed(1))

    def logits(labels: list[int], balanced: bool, batch_size: int) -> torch.Tensor:
        episode = Episode(images[:6], labels, images[6:], [0] * 4 + [1] * 4)
        method = FineTuning(scope=scope, epochs=2, lr=1e-2, batch_size=batch_size,
                            augment=False, balanced_support=balanced)  # fmt: skip
        return method(backbone, episode)

    unequal, equal = [0] + [1] * 5, [0] * 3 + [1] * 3
    assert not torch.equal(logits(unequal, False, 4), logits(unequal, True, 4))
    torch.testing.assert_close(logits(unequal, True, 4), logits(unequal, True, 64))
    assert torch.equal(logits(equal, False, 4), logits(equal, True, 4))
