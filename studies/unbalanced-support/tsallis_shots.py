"""``benchmarks/realistic_grid.py`` with the Tsallis head's two readings of "labelled images per
class" counted another way on supports of unequal classes (validation classes only).

``--order-shots mean|fewest``: the shots its Tsallis order is chosen from
(:func:`anyshot.methods.head.tsallis_order`): ``S / K`` or the smallest class's count (what
alpha-TIM's code takes). ``--band-shots mean|fewest``: the shots the band's "at least 2" reads.
The product when this was written: order ``mean``, band ``mean`` (now: order ``fewest``).
Only the first head's challenger (``_fit_either``) is patched; the Tsallis challenge of the
gate's answer (``tsallis_against_gate``) keeps the product's order. The cells' episodes share
one multiset of class counts, so the batch's first episode stands for all. The other arguments
are realistic_grid.py's.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/unbalanced-support/tsallis_shots.py \\
        --order-shots fewest --band-shots mean --split val --cells unbalanced \\
        --methods support-init,recommended --episodes-dir EPISODES --output order-val.json
"""

import sys

import torch.nn.functional as F

sys.path.insert(0, "benchmarks")
from anyshot.methods import head  # noqa: E402


def option(name: str) -> str:
    value = sys.argv[sys.argv.index(name) + 1]
    del sys.argv[sys.argv.index(name) : sys.argv.index(name) + 2]
    assert value in ("mean", "fewest"), value
    return value


order_shots, band_shots = option("--order-shots"), option("--band-shots")


def counted(rows: head.EpisodeRows, how: str) -> float:
    if how == "fewest":
        return float(F.one_hot(rows.targets[0], rows.ways).sum(0).min())
    return rows.support.shape[1] / rows.ways


def fit_either(training: head.HeadTraining, rows: head.EpisodeRows) -> head.FittedHead:
    """The product's ``_fit_either`` with the two counts above."""
    fitted = head._fit(training, rows)
    if not training.tsallis_head or rows.query.shape[1] == 0:
        return fitted
    tsallis = training.tsallis(counted(rows, order_shots))
    low, high = training.tsallis_band
    band = None
    if counted(rows, band_shots) >= 2 and high > low:
        share = head.predicted_classes(fitted.query_logits) / rows.ways
        band = (share >= low) & (share < high)
    return head.parsimonious(
        fitted,
        lambda mask: head._fit(tsallis, head._episodes(rows, mask)),
        training.tsallis_margin,
        training.tsallis_share,
        band=band,
    )


head._fit_either = fit_either
import realistic_grid  # noqa: E402

realistic_grid.main()
