"""anyshot's recommended settings: tuned on validation classes only (see BENCHMARKS.md).

The method dataclasses keep the paper's hyper-parameters as their defaults (T = 1, Adam 5e-5,
25 epochs, lambda = 1). With scope ``head`` those barely move a cosine classifier whose logits
lie in [-1, 1]. Plain query-entropy minimisation of the head alone collapses queries onto few
classes; TIM's class-balance term prevents that but assumes balanced queries and loses
several points when they are not. The recommended query term is the queries' log-likelihood
under a mixture of the classes whose proportions are re-estimated every step (maximum
likelihood: no pull toward uniform), with a small weight, on episode-centred embeddings; plus
TIM's balance term, used only when a first run's predicted query classes look balanced
(``adaptive_balance``, :mod:`anyshot.methods.balance`). On mini-ImageNet val it was the best
compromise over balanced, Dirichlet(2)-imbalanced and Dirichlet(0.5)-imbalanced queries, 1 and
5 shots (``benchmarks/mini_imagenet_table.py --split val --grid``): the adaptive balance term
gains about a point on balanced queries and costs 0.0-0.3 points on imbalanced ones, where
the same term used in every episode costs 16-31.
"""

from __future__ import annotations

from anyshot.methods.finetune import TransductiveFineTuning

__all__ = ["HEAD_SETTINGS", "QUERY_SETTINGS", "recommended_method", "setting_text"]

#: Transductive fine-tuning of the head: the winner of ``benchmarks/mini_imagenet_table.py
#: --split val --grid`` (5-way 1/5-shot, balanced and Dirichlet-imbalanced queries).
HEAD_SETTINGS: dict[str, float | int | bool] = {
    "temperature": 0.1,
    "lr": 1e-2,
    "epochs": 25,
    "entropy_weight": 0.0,
    "balance_weight": 3.0,
    "likelihood_weight": 0.2,
    "prior_count": 0.0,
    "adaptive_balance": True,
    "center": True,
}

#: The settings that use the query (unlabelled) images: dropped for inductive fine-tuning.
QUERY_SETTINGS = (
    "entropy_weight",
    "balance_weight",
    "likelihood_weight",
    "prior_count",
    "adaptive_balance",
    "center",
)


def recommended_method(*, seed: int = 0, device: str | None = None) -> TransductiveFineTuning:
    """Transductive fine-tuning of the cosine head with the validation-tuned settings."""
    return TransductiveFineTuning(scope="head", seed=seed, device=device, **HEAD_SETTINGS)  # type: ignore[arg-type]


def setting_text(name: str) -> str:
    """A :data:`HEAD_SETTINGS` value as help texts show it (``yes`` / ``no`` for switches)."""
    value = HEAD_SETTINGS[name]
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
