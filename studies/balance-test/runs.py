"""Both runs of the default's first head on every episode (val only): the first run without the
balance term (centred on the support) and the balanced second run (centred on the episode),
with today's balance test and candidate signals for choosing between the runs. Prints, per
cell, the accuracy of each run, of today's choice, and the signals' means; saves per-episode
arrays to --out.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch
from cells import val_batches

import anyshot.methods.head as head
from anyshot.methods.features import EpisodeRows
from anyshot.methods.presets import RECOMMENDED
from harness.episodes import EpisodeBatch


def both_runs(b: EpisodeBatch) -> dict[str, torch.Tensor]:
    training = RECOMMENDED.head_training
    rows = EpisodeRows(b.support.float(), b.targets.long(), b.query.float(), b.ways)
    first_on, second_on = head.run_centers(training.center_on)
    _, u1, w1 = head._initial(training, rows, first_on)
    first = head._train(training, replace(training.weights, balance=0.0), u1, w1)
    _, u2, w2 = head._initial(training, rows, second_on)
    second = head._train(training, training.weights, u2, w2)
    test = head.queries_look_balanced(training, first.query_logits, rows)
    p1, p2 = first.query_logits.softmax(-1), second.query_logits.softmax(-1)
    y1, y2 = p1.argmax(-1), p2.argmax(-1)
    truth = b.query_targets
    return {
        "acc_first": (y1 == truth).float().mean(-1),
        "acc_second": (y2 == truth).float().mean(-1),
        "test": test.float(),
        "agreement": (y1 == y2).float().mean(-1),
        "conf_first": p1.amax(-1).mean(-1),
        "conf_second": p2.amax(-1).mean(-1),
        "logits_first": first.query_logits,
        "logits_second": second.query_logits,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", default="*-balanced-5w*,*-dirichlet*-5w*,mini-manyway-16w*")
    parser.add_argument("--episodes-dir", type=Path, default=Path("/tmp/grid-episodes"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/balance-runs.pt"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = {}
    for name, b in val_batches(args.cells, args.episodes_dir):
        r = both_runs(b)
        record[name] = r
        chosen = torch.where(r["test"] > 0, r["acc_second"], r["acc_first"])
        print(
            f"{name:26s} first {100 * r['acc_first'].mean():5.1f} second "
            f"{100 * r['acc_second'].mean():5.1f} today {100 * chosen.mean():5.1f} "
            f"pass {100 * r['test'].mean():5.1f}% agree {r['agreement'].mean():.3f} "
            f"conf {r['conf_first'].mean():.3f}->{r['conf_second'].mean():.3f}",
            flush=True,
        )
    torch.save(record, args.out)


if __name__ == "__main__":
    main()
