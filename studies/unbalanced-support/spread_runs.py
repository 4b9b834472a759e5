"""``benchmarks/realistic_grid.py`` with ``shared_spread`` in only some of the head's runs
(validation classes only): ``--fill query-free`` fills the support of the runs that read no
query term the usual way (the inductive head, the gate's answer, and the Tsallis head, whose
query terms are alpha-TIM's) and trains the main transductive head on the support as it is;
``--fill all`` is the product's ``shared_spread``. Run it with ``shared_spread`` on, e.g.
``--methods support-init,recommended:shared_spread=True``; the other arguments are
realistic_grid.py's.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/unbalanced-support/spread_runs.py \\
        --fill query-free --split val --cells mini-unbalanced \\
        --methods support-init,recommended:shared_spread=True --episodes-dir EPISODES \\
        --output spread-query-free-val-mini.json
"""

import dataclasses
import sys

sys.path.insert(0, "benchmarks")
from anyshot.methods import head  # noqa: E402

where = sys.argv[sys.argv.index("--fill") + 1]
del sys.argv[sys.argv.index("--fill") : sys.argv.index("--fill") + 2]
assert where in ("all", "query-free"), where
product_fit = head._fit


def fit(training: head.HeadTraining, rows: head.EpisodeRows) -> head.FittedHead:
    """The product's ``_fit``, the main transductive head (Shannon query terms) unfilled."""
    main = training.weights.any and training.weights.order == 1.0
    if where == "query-free" and main:
        training = dataclasses.replace(training, shared_spread=False)
    return product_fit(training, rows)


head._fit = fit
import realistic_grid  # noqa: E402

realistic_grid.main()
