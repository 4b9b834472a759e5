"""``benchmarks/realistic_grid.py`` with the gate's per-shot term counting another number of
labelled images per class than ``S / K`` (``anyshot.methods.head.gate_shots``), for supports
of unequal classes (validation classes only). ``--gate-shots fewest``: the smallest class's
count (what alpha-TIM's code takes for its order); ``median``: the median class's; ``mean``:
``S / K``, as the product. The other arguments are realistic_grid.py's.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/unbalanced-support/gate_shots.py \\
        --gate-shots fewest --split val --cells mini-unbalanced \\
        --methods support-init,recommended --episodes-dir EPISODES --output fewest-mini.json
"""

import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, "benchmarks")
from anyshot.methods import head  # noqa: E402

choice = sys.argv[sys.argv.index("--gate-shots") + 1]
del sys.argv[sys.argv.index("--gate-shots") : sys.argv.index("--gate-shots") + 2]


def counted_shots(rows: head.EpisodeRows) -> float:
    """The batch's first episode's class counts (a cell's episodes share one multiset)."""
    counts = F.one_hot(rows.targets[0].long(), rows.ways).sum(0).float()
    if choice == "fewest":
        return float(counts.min())
    if choice == "median":
        return float(torch.quantile(counts, 0.5))
    return rows.support.shape[1] / rows.ways


head.gate_shots = counted_shots
import realistic_grid  # noqa: E402

realistic_grid.main()
