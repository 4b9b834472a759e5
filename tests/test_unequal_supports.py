"""Supports of unequal class sizes: the balance test (``unequal_balance_test``: a run
centred on the episode may open the balanced second run that a first run centred on the
support, leaning towards the classes of more labelled images, keeps closed; supports of equal
classes and queries of one class are decided as before), and the Tsallis head's order (from
the smallest class's labelled images, per episode)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from anyshot.methods import head
from anyshot.methods.features import EpisodeRows
from anyshot.methods.head import queries_look_balanced
from anyshot.methods.presets import RECOMMENDED


def rows(
    shots: list[int], query_classes: list[int], seed: int = 0, spread: float = 0.3
) -> EpisodeRows:
    """One episode ``E = 1`` of 5 classes in 32 dimensions (well separated at ``spread`` 0.3,
    overlapping at 2): ``shots[k]`` labelled rows of class ``k``, 15 query rows of each class
    in ``query_classes``."""
    generator = torch.Generator().manual_seed(seed)
    centres = 3 * torch.eye(5, 32) + 1.0  # a shared offset, as real embeddings have

    def draw(k: int, n: int) -> torch.Tensor:
        return centres[k] + spread * torch.randn(n, 32, generator=generator)

    support = torch.cat([draw(k, n) for k, n in enumerate(shots)])[None]
    targets = torch.tensor([k for k, n in enumerate(shots) for _ in range(n)])[None]
    query = torch.cat([draw(k, 15) for k in query_classes])[None]
    return EpisodeRows(support, targets, query, 5)


def one_class_logits(queries: int) -> torch.Tensor:
    """``[1, Q, 5]`` logits of a first run that predicts class 1 for every query."""
    return F.one_hot(torch.ones(1, queries, dtype=torch.long), 5).float()


def test_the_default_turns_it_on_and_the_inductive_head_off() -> None:
    assert RECOMMENDED.unequal_balance_test and RECOMMENDED.head_training.unequal_balance_test
    assert not RECOMMENDED.inductive().head_training.unequal_balance_test


def test_an_episode_centred_run_opens_the_second_run_only_where_the_support_is_unequal() -> None:
    training = RECOMMENDED.head_training
    off = dataclasses.replace(training, unequal_balance_test=False)
    unequal = rows([1, 20, 20, 20, 20], [0, 1, 2, 3, 4])
    first = one_class_logits(75)  # the first run's counts fail the test
    assert bool(queries_look_balanced(training, first, unequal)[0])
    assert not bool(queries_look_balanced(off, first, unequal)[0])
    # a first run centred on the episode already: nothing to test again
    episode = dataclasses.replace(training, center_on="episode")
    assert not bool(queries_look_balanced(episode, first, unequal)[0])
    # equal classes: the first run's counts alone decide, as before
    equal = rows([5, 5, 5, 5, 5], [0, 1, 2, 3, 4])
    assert not bool(queries_look_balanced(training, first, equal)[0])
    # queries of one class of an unequal support: the episode-centred run does not look balanced
    present = rows([1, 20, 20, 20, 20], [2] * 5)
    assert not bool(queries_look_balanced(training, first, present)[0])
    # a first run that passes is enough with or without it
    spread = F.one_hot(torch.arange(75)[None] % 5, 5).float()
    assert bool(queries_look_balanced(off, spread, present)[0])


def test_a_class_of_one_image_gets_its_queries_back() -> None:
    """Overlapping classes, one of 1 labelled image and four of 20, balanced queries: the
    support-centred first run predicts the rare class for almost none of its queries and fails
    the balance test; the episode-centred run passes it, and the balanced second run gives the
    rare class its queries back (4 episodes, one batch). The gate counts every query here: its
    75 are just above what it asks of this support (``6 + 16.2 / 2`` per class), so the few an
    outlier rule flags could close it in an episode and hide what this test is about."""
    episodes = [rows([1, 20, 20, 20, 20], [0, 1, 2, 3, 4], seed=s, spread=2.0) for s in range(4)]
    support = torch.cat([e.support for e in episodes])
    targets = torch.cat([e.targets for e in episodes])
    query = torch.cat([e.query for e in episodes])
    truth = torch.arange(5).repeat_interleave(15)
    recall, accuracy = {}, {}
    for flag in (False, True):
        method = dataclasses.replace(
            RECOMMENDED, unequal_balance_test=flag, gate_outlier_rate=0.0
        )
        predicted = method.fit_features(support, targets, query, ways=5).query_logits.argmax(-1)
        recall[flag] = float((predicted[:, :15] == 0).float().mean())
        accuracy[flag] = float((predicted == truth).float().mean())
    assert recall[False] < 0.1 and recall[True] > 0.25, recall
    assert accuracy[True] > accuracy[False], accuracy


def test_equal_classes_train_no_extra_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """An equal support whose first run fails the balance test (queries of 2 of the 5
    classes): the same runs, and the same logits, with or without the setting."""
    calls: list[int] = []
    train = head._train

    def counting(*args: object) -> head.FittedHead:
        calls.append(1)
        return train(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(head, "_train", counting)
    episode = rows([5, 5, 5, 5, 5], [0, 1, 0, 1, 0], seed=1)
    args = (episode.support, episode.targets, episode.query)
    logits = {}
    for flag in (False, True):
        calls.clear()
        method = dataclasses.replace(RECOMMENDED, unequal_balance_test=flag, tsallis_head=False)
        logits[flag] = method.fit_features(*args, ways=5).query_logits
        assert len(calls) == 1, (flag, len(calls))  # the first run only: its test failed
    assert torch.equal(logits[False], logits[True])


def test_the_network_scopes_retest_on_the_frozen_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    """At scope ``last`` the second look reads the frozen network's query embeddings, also
    when nothing else needs them (centre on the support, no safeguards)."""
    from anyshot.backbones import build_backbone
    from anyshot.episodes import Episode
    from anyshot.methods import FineTuning, network

    seen: list[int] = []
    look = network.queries_look_balanced

    def recording(training: head.HeadTraining, first: torch.Tensor, frozen: EpisodeRows):
        seen.append(frozen.query.shape[1])
        return look(training, first, frozen)

    monkeypatch.setattr(network, "queries_look_balanced", recording)
    torch.manual_seed(0)
    backbone = build_backbone("conv4", image_size=16)
    images = torch.rand(30, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    episode = Episode(images[:10], [0] + [1] * 3 + [2] * 3 + [3] * 3, images[10:], [0, 1, 2, 3] * 5)
    method = FineTuning(scope="last", epochs=1, lr=1e-2, augment=False, balance_weight=1.0,
                        likelihood_weight=0.2, adaptive_balance=True, center=True,
                        center_on="support", unequal_balance_test=True)  # fmt: skip
    assert torch.isfinite(method(backbone, episode)).all()
    assert seen == [20]


def test_a_batch_decides_per_episode() -> None:
    """Two episodes of 20 labelled rows in one batch, equal classes then unequal ones, both
    with a first run that fails the test: only the unequal one is tested again, and opens."""
    equal, unequal = rows([4, 4, 4, 4, 4], [0, 1, 2, 3, 4]), rows([1, 4, 5, 5, 5], [0, 1, 2, 3, 4])
    batch = EpisodeRows(
        torch.cat([equal.support, unequal.support]),
        torch.cat([equal.targets, unequal.targets]),
        torch.cat([equal.query, unequal.query]),
        5,
    )
    first = one_class_logits(75).repeat(2, 1, 1)
    assert queries_look_balanced(RECOMMENDED.head_training, first, batch).tolist() == [False, True]


def test_the_tsallis_order_reads_the_smallest_class_per_episode() -> None:
    """An episode of classes of 1 to 5 images gets order 2 (one image), not 5 (``S / K`` = 4);
    in a batch with an episode of 4 images per class (order 5) each gets what it gets alone."""
    training = RECOMMENDED.head_training
    unequal, equal = rows([1, 4, 5, 5, 5], [0, 1, 2, 3, 4]), rows([4, 4, 4, 4, 4], [0, 1, 2, 3, 4])
    alone = head._fit_tsallis(training, unequal).query_logits
    assert torch.equal(alone, head._fit(training.tsallis(1.0), unequal).query_logits)
    assert not torch.equal(alone, head._fit(training.tsallis(4.0), unequal).query_logits)
    batch = EpisodeRows(
        torch.cat([equal.support, unequal.support]),
        torch.cat([equal.targets, unequal.targets]),
        torch.cat([equal.query, unequal.query]),
        5,
    )
    together = head._fit_tsallis(training, batch).query_logits
    torch.testing.assert_close(together[1], alone[0])
    torch.testing.assert_close(together[0], head._fit_tsallis(training, equal).query_logits[0])
