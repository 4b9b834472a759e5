"""Named, typed presets: each a method value, the single place its settings are written.

The method dataclasses keep the paper's hyper-parameters as their defaults (T = 1, Adam 5e-5,
25 epochs, lambda = 1), except batch-norm at scope ``all``: the stored statistics, not the
paper's training mode (``norm_statistics``). With scope ``head`` those barely move a cosine
classifier whose logits lie in [-1, 1].

:data:`RECOMMENDED`, the default of ``evaluate``, ``classify``, ``fit`` and
``FewShotClassifier``, is transductive fine-tuning of the cosine head: T = 0.1, Adam 1e-2, 25
epochs, the queries' mixture log-likelihood (weight 0.2) and TIM's balance term (weight 3) only
in episodes whose queries look balanced (``adaptive_balance``, :mod:`anyshot.methods.balance`),
all tuned on mini-ImageNet **val** classes (``benchmarks/mini_imagenet_table.py --split val
--grid``); plus the safeguards for realistic query sets (few of the support classes present,
tiny query sets, many ways, strong imbalance), chosen on a validation grid of such sets
(``benchmarks/realistic_grid.py --split val``): embeddings centred on the support's class means
(on the episode's mean in the balanced second run, ``center_on="adaptive"``), class proportions
with an empirical-Bayes Dirichlet prior; fine-tuning on the support alone (the inductive head,
:meth:`~anyshot.methods.FineTuning.inductive`) when there are fewer than ``6 + shots / 2``
queries per class the queries appear to hold (the effective number of classes the trained
head predicts for them, ``exp`` of the entropy of the predicted class frequencies; ``shots`` =
labelled images per class; counted on support-init's predictions until
``studies/present-gate/``, which lifted the present-class cells of the val study by 0.6 points
on average, none below support-init); and support-based initialisation's answer when the
trained head agrees with it on fewer than half of the queries, where its predictions spread over
at least 3/4 of the classes (on queries of a few of many classes a right answer disagrees with
it by design: ``studies/guard-scope/``). The gate's numbers come from a second
validation study of query-set sizes from 2 to 100 at 1, 5, 10 and 20 shots (mini-ImageNet and
Omniglot val): with fewer queries per class than that, the query terms cost accuracy against
the class means more often than they add. The gate's answer is the inductive head rather than
the class means because with many labelled images the class means fall far behind a trained
head (``benchmarks/any_shot_curve.py --split val``: up to 15 points on Omniglot at 15 shots),
and the inductive head was at or above the class means in every cell of that study. The gate
counts only the queries the product would not call unknown (``gate_outlier_rate`` 0.05, the
default false-alarm rate of ``FewShotClassifier``): with 20 Omniglot val query images plus 20
images of other classes it lost 4.2 / 4.4 points (1 / 5 shots) to the same 20 alone, 3.4 / 1.3
so, and the val grid moved by -0.01 / -0.04 points per mini-ImageNet / Omniglot cell on
average, by -0.2 in the two cells it lowered significantly (``benchmarks/open_set.py``,
``realistic_grid.py --split val``, ``studies/outlier-gate/``). Where the gate's inductive head
predicts the queries to hold fewer than half of the classes, it gets the class proportions its
predictions imply (``gate_prior_share`` 0.5, :func:`~anyshot.methods.head.with_query_prior`):
on the val grid +0.2 / +1.9 points per mini-ImageNet / Omniglot cell, up to +21 on Omniglot
present-class cells, none lower than 0.2; at share 3/4, Omniglot 160-way one-shot (queries of
every class) fell below support-init (``studies/gate-prior/``). Beside
the head, a second one trained with alpha-TIM's query terms (Tsallis entropies,
:meth:`~anyshot.methods.head.HeadTraining.tsallis`) answers the episodes where the first head
predicts fewer than 3/4 of the classes for the queries and it more than 0.5 fewer still
(``tsallis_head``, :func:`~anyshot.methods.head.parsimonious`; ``studies/alpha-head/``: +1.2
points on the 39 present-class cells of the val study, none lower than 0.2 points). The same
rule lets it answer an episode the gate closed (the first head's predictions can spread over
most classes where the queries hold a few), against the gate's answer, where the gate opens on
its own count, the two answers agree on at least half of the queries and support-init's
predictions do not cover the classes (``tsallis_gated``,
:func:`~anyshot.methods.head.safeguarded`;
``studies/present-five/``: mini-ImageNet val 16-way one-shot with 5 present classes 70.5 ->
72.7, alpha-TIM 72.7 on the same episodes).
Where the classes have unequal numbers of labelled images, each class weighs the same in the
support cross-entropy (``balanced_support``, :func:`~anyshot.methods.objective.
class_balanced_weights`): on the val grid's 8 cells of unbalanced supports
(``realistic_grid.py --split val --cells unbalanced``) +0.18 to +3.83 points, none lower, and
Omniglot 20-way with 10 classes of one image and 10 of five, where the default had fallen
below support-init (52.5 against 54.6), 55.8. On such supports the balanced second run
also starts where a run centred on the episode predicts balanced-looking query classes
(``unequal_balance_test``, :func:`~anyshot.methods.head.queries_look_balanced`: a first run
centred on the support leans towards the classes of more images), and the Tsallis head's
order reads the smallest class's labelled images, as alpha-TIM's code does
(:func:`~anyshot.methods.head.tsallis_order`): on the val grid's 16 cells of unequal supports
(balanced, Dirichlet and present-class queries) +0.1 to +8.4 points in 13, -0.9, -0.04 and
-1.1 in 3, none below support-init minus its CI (``studies/unbalanced-support/``). The heads on
uncentred rows (the inductive head, so the gate's answer, and the Tsallis head) fill the smaller
classes up to the largest's count with the within-class spread the classes share
(``shared_spread``, :func:`~anyshot.methods.head.with_shared_spread`): on the val grid's 28
cells of unequal supports (12 of them with 5 or 20 query images, where the inductive head had
put the default below support-init minus its CI in 5) +0.06 to +9.9 points in 25, none lower
than -0.15, none below support-init minus its CI. Supports of equally many images per class are
trained exactly as before.
:data:`UNGUARDED` is the same head without the safeguards (the default until they were added):
better on a few cells, far below support-init on others (BENCHMARKS.md).

Use a preset as it is, or change a field with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses

from anyshot.methods.finetune import FineTuning, TransductiveFineTuning
from anyshot.methods.support_init import SupportBasedInit

__all__ = [
    "NETWORK",
    "PAPER",
    "PAPER_INDUCTIVE",
    "PRESETS",
    "RECOMMENDED",
    "RECOMMENDED_INDUCTIVE",
    "SUPPORT_INIT",
    "SUPPORT_INIT_CONFIDENCE_SHOTS_POWER",
    "SUPPORT_INIT_CONFIDENCE_TEMPERATURE",
    "TIM_LIKE",
    "UNGUARDED",
    "Method",
]

#: Every method that yields a fitted cosine classifier.
Method = SupportBasedInit | FineTuning

#: Transductive fine-tuning of the head with the validation-tuned settings, without the
#: safeguards for realistic query sets (episode centre, maximum-likelihood proportions, no
#: fallback to support-init): the default before the safeguards; each class weighs the same in
#: the support cross-entropy (``balanced_support``, for supports of unequal classes; added later,
#: with the safeguards in place: see the module doc).
UNGUARDED = TransductiveFineTuning(
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
    balanced_support=True,
)

#: Support-init's confidence temperature: its ``cos / 0.1`` logits are divided by
#: ``tau = 0.46 * shots ** -0.25`` (this and :data:`SUPPORT_INIT_CONFIDENCE_SHOTS_POWER`), chosen
#: on val classes. 0.46 was the NLL-optimal single ``tau`` of the one- and five-shot 5-way cells
#: pooled (``benchmarks/calibration.py --split val``), both domains weighted equally; it stays
#: the one-shot ``tau``, where the domains disagree (mini-ImageNet wants about 0.40, Omniglot
#: 0.6). The power: class means of more images are nearer their queries; with it the ECE is lower
#: than with 0.46 alone in all 76 val cells of 2 to 20 shots, and the same in the 68 one-shot
#: ones (5 to 100 ways, 2 to 100 queries, balanced, Dirichlet and present-class query sets of
#: both domains; mean of the 144 cells 9.3 -> 4.3%; ``studies/present-calibration/``).
SUPPORT_INIT_CONFIDENCE_TEMPERATURE = 0.46
#: See :data:`SUPPORT_INIT_CONFIDENCE_TEMPERATURE`.
SUPPORT_INIT_CONFIDENCE_SHOTS_POWER = -0.25

#: The default: :data:`UNGUARDED` with the safeguards for realistic query sets (see the module doc):
#: centre on the support's class means (on the episode in the balanced second run), empirical-Bayes
#: proportions, the inductive head (fine-tuning on the support alone) below ``6 + shots / 2``
#: queries per class the queries appear to hold (with the proportions its predictions imply where
#: they hold fewer than half of the classes), support-init's answer below 50% agreement with it
#: where its predictions cover the classes;
#: the Tsallis head's answer where it explains the queries with clearly fewer of the classes
#: (``tsallis_head``), than the gate's answer too (``tsallis_gated``), and from 2 labelled
#: images per class where the first head predicts 40-80% of the classes (``tsallis_band``:
#: imbalanced queries; val: +0.2 to +0.8 in 6 of 41 cells of 2+ shots, none lower,
#: ``studies/five-shot-tsallis/``). A trained head's logits
#: (the inductive head's too) are divided by ``tau = 0.175 * shots ** -0.60 * exp(2.86 s + 1.07
#: h)``, ``s`` the mean cosine between the support's class means
#: (:func:`anyshot.methods.cosine.class_mean_similarity`), ``h`` the head's mean uncalibrated
#: confidence on the queries: no single ``tau`` suits both mini-ImageNet (``tau`` about
#: 1) and Omniglot one-shot (about 2), whose classes look far more alike to the backbone; the rule's
#: four numbers minimise the query NLL of 5-way 1 and 5 shots, balanced and Dirichlet(2) /
#: Dirichlet(0.5) queries of both domains' val classes, each cell weighted equally, plus ten times
#: the mean squared gap between a cell's mean confidence and its accuracy
#: (``studies/calibration-rule/``, "Refit on the cells' gaps"). Support-init's answers (the
#: guard's) get support-init's calibration (``fallback_temperature``, ``fallback_shots_power``);
#: the Tsallis head's, sharper, ``tau = 3.9 * shots ** -0.35``, fitted the same way on the val
#: episodes it answered (``studies/tsallis-calibration/``).
RECOMMENDED = dataclasses.replace(
    UNGUARDED,
    center_on="adaptive",
    unequal_balance_test=True,
    shared_spread=True,
    empirical_bayes=True,
    min_queries_per_class=6.0,
    queries_per_shot=0.5,
    gate_outlier_rate=0.05,
    gate_prior_share=0.5,
    min_agreement=0.5,
    tsallis_head=True,
    tsallis_gated=True,
    tsallis_band=(0.4, 0.8),
    confidence_temperature=0.175,
    confidence_shots_power=-0.60,
    confidence_similarity_slope=2.86,
    confidence_query_slope=1.07,
    tsallis_confidence_temperature=3.9,
    tsallis_confidence_shots_power=-0.35,
    fallback_temperature=SUPPORT_INIT_CONFIDENCE_TEMPERATURE,
    fallback_shots_power=SUPPORT_INIT_CONFIDENCE_SHOTS_POWER,
)

#: :data:`RECOMMENDED` without the query terms: fine-tuning on the support alone.
RECOMMENDED_INDUCTIVE = RECOMMENDED.inductive()

#: Support-based initialisation at the recommended head's temperature, calibrated (T and the
#: confidence temperature only scale the confidences: the predictions are those of any T).
SUPPORT_INIT = SupportBasedInit(
    temperature=RECOMMENDED.temperature,
    confidence_temperature=SUPPORT_INIT_CONFIDENCE_TEMPERATURE,
    confidence_shots_power=SUPPORT_INIT_CONFIDENCE_SHOTS_POWER,
)

#: The paper's transductive fine-tuning (T = 1, Adam 5e-5, 25 epochs, lambda = 1, scope all;
#: batch-norm on the stored statistics, ``norm_statistics="batch"`` for the paper's).
PAPER = TransductiveFineTuning()

#: The paper's (inductive) fine-tuning.
PAPER_INDUCTIVE = FineTuning()

#: Training every parameter of the network, for images far from the backbone's pre-training
#: (what ``--scope auto`` trains when the classes look alike to the frozen backbone; see
#: :mod:`anyshot.methods.scope_rule`): inductive fine-tuning at scope ``all``, T = 0.1, Adam
#: 1e-2 for the head and 1e-3 for the network, 25 full-batch epochs, the pre-training
#: augmentations without flips (characters and digits are not mirror-symmetric), batch-norm on
#: the stored statistics. On val classes (``studies/scope-curve/``): 20-way Omniglot 1 / 5 / 15
#: labelled images per class 71.3 / 96.5 / 96.5%, against 47.0 / 86.0 / 89.0 for the inductive
#: head; the paper's settings (:data:`PAPER_INDUCTIVE`) gave 50.0 / 74.5 on the 1- and 5-shot
#: cells. Its confidences are over-confident as trained: logits divided by ``tau = 1.38 *
#: shots ** 0.07`` (1.38 at one labelled image per class, 1.54 at five), the NLL optimum of that
#: form on Omniglot val (20 ways, 1 and 5 labelled images per class, 12 fits each, each cell
#: weighted equally; ``studies/network-calibration/``: ECE 11.0 / 3.3% as trained, 3.0 / 1.4%
#: with the rule; one constant, 1.41, gave 3.6 / 1.9).
NETWORK = FineTuning(
    scope="all",
    temperature=0.1,
    lr=1e-2,
    network_lr=1e-3,
    epochs=25,
    augment=True,
    flip=False,
    norm_statistics="pretrained",
    confidence_temperature=1.38,
    confidence_shots_power=0.07,
)

#: A TIM-like head: query entropy plus TIM's class-balance term (weight 1), T = 0.1, Adam 1e-2.
TIM_LIKE = TransductiveFineTuning(
    scope="head", temperature=0.1, lr=1e-2, entropy_weight=1.0, balance_weight=1.0
)

#: Preset name -> method.
PRESETS: dict[str, Method] = {
    "recommended": RECOMMENDED,
    "recommended-inductive": RECOMMENDED_INDUCTIVE,
    "unguarded": UNGUARDED,
    "support-init": SUPPORT_INIT,
    "network": NETWORK,
    "paper": PAPER,
    "paper-inductive": PAPER_INDUCTIVE,
    "tim-like": TIM_LIKE,
}
