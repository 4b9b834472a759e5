"""Evaluation: run a method on many episodes, one record per episode, honest statistics.

* :mod:`.records` — the one per-episode record builder, :func:`summarize`,
  :class:`EvaluationResult` (records + summary + config, saved as JSON), :func:`environment_info`;
* :mod:`.loop` — :func:`evaluate`: a method over a stream of :class:`~anyshot.episodes.Episode`;
* :mod:`.cached` — support-init / head-scope methods on cached embeddings, many same-shaped
  episodes at once (:func:`evaluate_cached`);
* :mod:`.run` — what ``anyshot evaluate`` does, as a library function driven by a config
  object (:class:`~anyshot.evaluation.run.EvaluationConfig`,
  :func:`~anyshot.evaluation.run.run_evaluation`); import it from ``anyshot.evaluation.run``.
"""

from __future__ import annotations

from anyshot.evaluation.cached import (
    TIMING,
    ItemFeatures,
    embed_items,
    episode_items,
    episode_tensors,
    evaluate_cached,
    plan_batches,
    shard_episodes,
    supports_cached,
)
from anyshot.evaluation.loop import evaluate
from anyshot.evaluation.records import (
    EvaluationResult,
    environment_info,
    episode_record,
    running_accuracy,
    summarize,
)

__all__ = [
    "TIMING",
    "EvaluationResult",
    "ItemFeatures",
    "embed_items",
    "environment_info",
    "episode_items",
    "episode_record",
    "episode_tensors",
    "evaluate",
    "evaluate_cached",
    "plan_batches",
    "running_accuracy",
    "shard_episodes",
    "summarize",
    "supports_cached",
]
