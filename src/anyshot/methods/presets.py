"""Named, typed presets: each a method value, the single place its settings are written.

The method dataclasses keep the paper's hyper-parameters as their defaults (T = 1, Adam 5e-5,
25 epochs, lambda = 1). With scope ``head`` those barely move a cosine classifier whose logits
lie in [-1, 1]. anyshot's recommended head (:data:`RECOMMENDED`) was tuned on mini-ImageNet
**val** classes only (``benchmarks/mini_imagenet_table.py --split val --grid``, 5-way 1/5-shot,
balanced and Dirichlet-imbalanced queries; BENCHMARKS.md): episode-centred embeddings, T = 0.1,
Adam 1e-2, 25 epochs, the queries' mixture log-likelihood (weight 0.2, proportions re-estimated
by maximum likelihood) and TIM's balance term (weight 3) only in episodes whose queries look
balanced (``adaptive_balance``, :mod:`anyshot.methods.balance`).

:data:`SAFE` is :data:`RECOMMENDED` made safe for realistic query sets (few of the classes present,
tiny query sets, many ways, strong imbalance), where the recommended head can fall far below
support-based initialisation: a support-only centre, empirically-Bayes-estimated proportions, and
support-init's answer when there are fewer than 2 queries per class or when the trained head
agrees with support-init on fewer than half of the queries. On a 59-cell validation grid
(mini-ImageNet and Omniglot val classes) it was never below support-init and kept most of the
recommended head's gains on the standard cells. It is not the default yet.

Use a preset as it is, or change a field with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses

from anyshot.methods.finetune import FineTuning, TransductiveFineTuning
from anyshot.methods.support_init import SupportBasedInit

__all__ = [
    "PAPER",
    "PAPER_INDUCTIVE",
    "PRESETS",
    "RECOMMENDED",
    "RECOMMENDED_INDUCTIVE",
    "SAFE",
    "SUPPORT_INIT",
    "TIM_LIKE",
    "Method",
]

#: Every method that yields a fitted cosine classifier.
Method = SupportBasedInit | FineTuning

#: Transductive fine-tuning of the head with the validation-tuned settings: the default of
#: ``evaluate --method transductive``, ``classify``, ``fit`` and ``FewShotClassifier``.
RECOMMENDED = TransductiveFineTuning(
    scope="head",
    temperature=0.1,
    lr=1e-2,
    epochs=25,
    entropy_weight=0.0,
    balance_weight=3.0,
    likelihood_weight=0.2,
    prior_count=0.0,
    adaptive_balance=True,
    center=True,
)

#: :data:`RECOMMENDED` without the query terms: fine-tuning on the support alone.
RECOMMENDED_INDUCTIVE = RECOMMENDED.inductive()

#: :data:`RECOMMENDED` with the safeguards for realistic query sets (see the module doc): centre
#: on the support's class means (on the episode in the balanced second run), empirical-Bayes
#: proportions, support-init's answer below 2 queries per class or below 50% agreement with it.
SAFE = dataclasses.replace(
    RECOMMENDED,
    center_on="adaptive",
    empirical_bayes=True,
    min_queries_per_class=2.0,
    min_agreement=0.5,
)

#: Support-based initialisation at the recommended head's temperature (T only scales the
#: confidences: the predictions are those of any T).
SUPPORT_INIT = SupportBasedInit(temperature=RECOMMENDED.temperature)

#: The paper's transductive fine-tuning (T = 1, Adam 5e-5, 25 epochs, lambda = 1, scope all).
PAPER = TransductiveFineTuning()

#: The paper's (inductive) fine-tuning.
PAPER_INDUCTIVE = FineTuning()

#: A TIM-like head: query entropy plus TIM's class-balance term (weight 1), T = 0.1, Adam 1e-2.
TIM_LIKE = TransductiveFineTuning(
    scope="head", temperature=0.1, lr=1e-2, entropy_weight=1.0, balance_weight=1.0
)

#: Preset name -> method.
PRESETS: dict[str, Method] = {
    "recommended": RECOMMENDED,
    "recommended-inductive": RECOMMENDED_INDUCTIVE,
    "safe": SAFE,
    "support-init": SUPPORT_INIT,
    "paper": PAPER,
    "paper-inductive": PAPER_INDUCTIVE,
    "tim-like": TIM_LIKE,
}
