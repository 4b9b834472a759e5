"""Supports of unequal class sizes filled up with their shared within-class spread
(``shared_spread``, :func:`anyshot.methods.head.with_shared_spread`): what the filled support
holds, that supports of equal classes train exactly as before, that a batch gives each episode
what it gets alone, and that the head fine-tuned on it stops squeezing a class of one image."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tests.test_unequal_supports import rows

from anyshot.errors import ConfigurationError
from anyshot.methods import FineTuning, head
from anyshot.methods.features import EpisodeRows
from anyshot.methods.presets import RECOMMENDED


def batch(*episodes: EpisodeRows) -> EpisodeRows:
    """The episodes as one batch (same support and query sizes)."""
    return EpisodeRows(
        torch.cat([e.support for e in episodes]),
        torch.cat([e.targets for e in episodes]),
        torch.cat([e.query for e in episodes]),
        episodes[0].ways,
    )


def test_every_class_is_filled_to_the_largest_with_its_mean_plus_others_offsets() -> None:
    episode = rows([1, 2, 5, 5, 5], [0, 1, 2, 3, 4])
    filled = head.with_shared_spread(episode)
    assert filled.support.shape == (1, 25, 32)
    assert torch.bincount(filled.targets[0], minlength=5).tolist() == [5] * 5
    assert torch.equal(filled.support[:, :18], episode.support)  # the labelled rows first
    assert torch.equal(filled.targets[:, :18], episode.targets)
    support, targets = episode.support[0], episode.targets[0]
    means = torch.stack([support[targets == k].mean(0) for k in range(5)])  # [K, D]
    offsets = support - means[targets]  # [S, D]; the one-image class's is 0
    for row, k in zip(filled.support[0, 18:], filled.targets[0, 18:], strict=True):
        nearest = (row - means[k] - offsets).norm(dim=-1).min()
        assert float(nearest) < 1e-5  # m_k + (x_j - m_c(j)) for some labelled x_j
    # each new row lies nearer its own class mean than any other (the spread is small here)
    new = filled.support[0, 18:]
    assert torch.equal(torch.cdist(new, means).argmin(-1), filled.targets[0, 18:])
    assert torch.equal(head.with_shared_spread(episode).support, filled.support)  # no draw


def test_equal_classes_are_left_as_they_are() -> None:
    equal = rows([4, 4, 4, 4, 4], [0, 1, 2, 3, 4])
    assert head.with_shared_spread(equal) is equal
    off = dataclasses.replace(RECOMMENDED.head_training, shared_spread=False)
    on = dataclasses.replace(off, shared_spread=True)
    for training in (off, off.inductive()):
        again = dataclasses.replace(training, shared_spread=True)
        assert torch.equal(
            head.fit_head(training, equal).query_logits, head.fit_head(again, equal).query_logits
        )
    assert on.inductive().shared_spread  # it reads no query: the inductive head keeps it


def test_the_default_fills_the_uncentred_heads_only() -> None:
    """The inductive head (the gate's answer) and the Tsallis head fill their support; the
    centred transductive head trains on it as it is, so its logits do not change."""
    training = RECOMMENDED.head_training
    assert training.shared_spread and not head.fills(training)
    assert head.fills(training.inductive()) and head.fills(training.tsallis(1.0))
    unequal = rows([1, 4, 5, 5, 5], [0, 1, 2, 3, 4])
    off = dataclasses.replace(training, shared_spread=False)
    assert torch.equal(
        head._fit(training, unequal).query_logits, head._fit(off, unequal).query_logits
    )
    inductive, plain = training.inductive(), off.inductive()
    assert not torch.equal(
        head._fit(inductive, unequal).query_logits, head._fit(plain, unequal).query_logits
    )
    # one query image: the gate answers with the filled inductive head
    one = head.EpisodeRows(unequal.support, unequal.targets, unequal.query[:, :1], 5)
    gated = head.fit_head(training, one)
    assert gated.gated is not None and bool(gated.gated[0])
    torch.testing.assert_close(gated.query_logits, head._fit(inductive, one).query_logits)


def test_a_batch_gives_each_episode_what_it_gets_alone() -> None:
    """Episodes of 20 labelled rows whose largest classes differ (8, 5 and 4 images: filled to
    40, 25 and 20 rows) train apart and come back in order; two of largest class 5, filled
    from different counts, train together. ``with_shared_spread`` refuses a batch whose
    largest classes differ."""
    training = RECOMMENDED.head_training.inductive()
    assert head.fills(training)
    episodes = [
        rows([1, 1, 5, 5, 8], [0, 1, 2, 3, 4], seed=1),
        rows([4, 4, 4, 4, 4], [0, 1, 2, 3, 4], seed=2),
        rows([1, 4, 5, 5, 5], [0, 1, 2, 3, 4], seed=3),
        rows([2, 3, 5, 5, 5], [0, 1, 2, 3, 4], seed=4),  # filled with the third, differently
    ]
    together = head.fit_head(training, batch(*episodes)).query_logits
    for i, episode in enumerate(episodes):
        torch.testing.assert_close(together[i], head.fit_head(training, episode).query_logits[0])
    with pytest.raises(ValueError, match="largest"):
        head.with_shared_spread(batch(*episodes[:2]))


def test_the_one_image_class_gets_its_queries_back_from_the_inductive_head() -> None:
    """Classes of one labelled image and four of 20, balanced queries, 6 episodes: fine-tuned
    on the support as it is, the inductive head gives the one-image class far fewer of its
    queries than class means do (0.30 against 0.80 when written); filled up, clearly more
    (0.58), and it is more accurate (0.91 against 0.85). Class means stay ahead here: for
    these isotropic Gaussian classes they are the best rule there is."""
    episodes = [rows([1, 20, 20, 20, 20], [0, 1, 2, 3, 4], seed=s, spread=0.6) for s in range(6)]
    episode = batch(*episodes)
    truth = torch.arange(5).repeat_interleave(15)
    inductive = RECOMMENDED.inductive()
    methods = {
        "plain": dataclasses.replace(inductive, shared_spread=False),
        "filled": dataclasses.replace(inductive, shared_spread=True),
    }
    recall, accuracy = {}, {}
    for name, method in methods.items():
        logits = method.fit_features(episode.support, episode.targets, episode.query, ways=5)
        predicted = logits.query_logits.argmax(-1)
        recall[name] = float((predicted[:, :15] == 0).float().mean())
        accuracy[name] = float((predicted == truth).float().mean())
    assert recall["filled"] > recall["plain"] + 0.1, recall
    assert accuracy["filled"] > accuracy["plain"] + 0.02, accuracy


def test_the_network_scopes_refuse_it() -> None:
    with pytest.raises(ConfigurationError, match="shared_spread"):
        FineTuning(scope="last", shared_spread=True)


def test_the_command_line_turns_it_off_and_keeps_it_from_the_network() -> None:
    from anyshot.cli import build_parser
    from anyshot.cli.options import method_from_args
    from anyshot.methods.scope_rule import ScopeRule

    parser = build_parser()
    base = ["evaluate", "--dataset", "omniglot", "--data-root", "x", "--output", "o.json"]
    assert method_from_args(parser.parse_args(base)) == RECOMMENDED
    off = method_from_args(parser.parse_args([*base, "--no-shared-spread"]))
    assert isinstance(off, FineTuning) and not off.shared_spread
    inductive = method_from_args(parser.parse_args([*base, "--method", "finetune"]))
    assert isinstance(inductive, FineTuning) and inductive.shared_spread
    with pytest.raises(ConfigurationError, match="shared_spread"):
        method_from_args(parser.parse_args([*base, "--scope", "last", "--shared-spread"]))
    classify = ["classify", "--support", "s", "--query", "q", "--shared-spread"]
    rule = method_from_args(parser.parse_args(classify))  # --scope auto
    assert isinstance(rule, ScopeRule)
    assert rule.head.shared_spread and not rule.network.shared_spread
