"""``benchmarks/realistic_grid.py`` with ``shared_spread`` in every run of the head (validation
classes only): ``--fill all`` also fills the support of the main transductive head, centred,
which the product leaves as it is (:func:`anyshot.methods.head.fills`); ``--fill query-free``
is the product (the inductive head, so the gate's answer, and the Tsallis head fill). Run it
with ``shared_spread`` on (the default); the other arguments are realistic_grid.py's.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/unbalanced-support/spread_runs.py \\
        --fill all --split val --cells mini-unbalanced \\
        --methods support-init,recommended:shared_spread=True --episodes-dir EPISODES \\
        --output spread-all-val-mini.json

Logs: ``spread-all-val-*.log`` and ``spread-query-free-val-*.log`` (both run before the
product's rule, the first by the product of then, which filled every run).
"""

import sys

sys.path.insert(0, "benchmarks")
from anyshot.methods import head  # noqa: E402

where = sys.argv[sys.argv.index("--fill") + 1]
del sys.argv[sys.argv.index("--fill") : sys.argv.index("--fill") + 2]
assert where in ("all", "query-free"), where
if where == "all":
    head.fills = lambda training: training.shared_spread
import realistic_grid  # noqa: E402

realistic_grid.main()
