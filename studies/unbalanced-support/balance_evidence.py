"""``benchmarks/realistic_grid.py`` with another balance test for supports of unequal classes
(validation classes only). ``--evidence run``: where the first run (centred on the support)
fails the test in such an episode, a second first run, centred on the episode and without the
balance term, is trained and its predicted classes are tested instead. Written when the product
(``unequal_balance_test``, commit 7afc370) tested the predictions of the episode-centred class
means; the product does this now (``anyshot.methods.head.queries_look_balanced``), so today the
script reproduces the default. The other arguments are realistic_grid.py's.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python \\
        studies/unbalanced-support/balance_evidence.py --evidence run --split val \\
        --cells unbalanced --methods support-init,recommended \\
        --episodes-dir EPISODES --output evidence-run-val-mini.json
"""

import dataclasses
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, "benchmarks")
from anyshot.methods import head  # noqa: E402
from anyshot.methods.balance import looks_balanced  # noqa: E402

choice = sys.argv[sys.argv.index("--evidence") + 1]
del sys.argv[sys.argv.index("--evidence") : sys.argv.index("--evidence") + 2]
assert choice == "run", choice


def episode_run_test(
    training: head.HeadTraining, first_logits: torch.Tensor, rows: head.EpisodeRows
) -> torch.Tensor:
    counts = F.one_hot(first_logits.argmax(-1), rows.ways).sum(1)
    balanced = looks_balanced(counts).cpu()
    shots = F.one_hot(rows.targets, rows.ways).sum(1)
    pick = (shots.amax(-1) != shots.amin(-1)).cpu() & ~balanced
    if not (training.unequal_balance_test and training.center and bool(pick.any())):
        return balanced
    chosen = head._episodes(rows, pick)
    _, units, weight = head._initial(training, chosen, "episode")
    plain = dataclasses.replace(training.weights, balance=0.0)
    run = head._train(training, plain, units, weight)
    again = F.one_hot(run.query_logits.argmax(-1), rows.ways).sum(1)
    balanced[pick] = looks_balanced(again).cpu()
    return balanced


head.queries_look_balanced = episode_run_test
import realistic_grid  # noqa: E402

realistic_grid.main()
