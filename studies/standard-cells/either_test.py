"""The balance term where the first head's predicted counts OR support-init's look balanced
(support-init: nearest class mean, no training), against the default (the first head's counts
alone), on the 5-way standard cells of the realistic grid's val episodes; paired differences.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks .venv/bin/python studies/standard-cells/either_test.py
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import anyshot.methods.head as head_module
from anyshot.methods.balance import looks_balanced
from anyshot.methods.cosine import class_means, unit_embeddings
from anyshot.methods.presets import RECOMMENDED
from cells import val_batches


def main() -> None:
    torch.set_num_threads(1)
    diffs = []
    for cell, b in val_batches():
        means = class_means(b.support, b.targets, b.ways)
        nearest = (unit_embeddings(b.query) @ means.transpose(1, 2)).argmax(-1)
        si_balanced = looks_balanced(F.one_hot(nearest, b.ways).sum(1))

        def accuracy(either: bool) -> np.ndarray:
            head_module.looks_balanced = (lambda c: looks_balanced(c) | si_balanced) if either else looks_balanced
            logits = RECOMMENDED.fit_features(b.support, b.targets, b.query, ways=b.ways,
                                              episodes_per_chunk=len(b.support)).query_logits
            return (logits.argmax(-1) == b.query_targets).float().mean(1).numpy()

        base, either = accuracy(False), accuracy(True)
        d = 100 * (either - base)
        diffs.append(d.mean())
        print(f"{cell:24s} default {100 * base.mean():5.1f} either {100 * either.mean():5.1f} "
              f"({d.mean():+.2f}±{1.96 * d.std() / len(d) ** 0.5:.2f}) support-init balanced {float(si_balanced.float().mean()):.2f}", flush=True)
    print(f"mean difference {np.mean(diffs):+.3f}")


if __name__ == "__main__":
    main()
