"""How often does the balance test pass, on untrained predictions, on the val grid's 1-shot 5-way and many-way cells?
(val only; a diagnosis, nothing shipped)

For each episode: ``anyshot.methods.balance.looks_balanced`` on the counts of support-init's
predicted classes (argmax cosine to the unit class means of the rectified unit rows), and on
the true query classes. The default's test reads its first trained run instead; this asks
whether the counts of an untrained answer already look balanced where the queries are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from cells import val_batches

from anyshot.methods.balance import looks_balanced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", default="*-balanced-5w1s,*-dirichlet*-5w1s,*-manyway-*1s")
    parser.add_argument("--episodes-dir", type=Path, default=Path("/tmp/grid-episodes"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, b in val_batches(args.cells, args.episodes_dir):
        k = b.ways
        s = F.normalize(b.support.float().clamp_min(0), dim=-1)
        q = F.normalize(b.query.float().clamp_min(0), dim=-1)
        one_hot = F.one_hot(b.targets.long(), k).float()
        means = F.normalize(one_hot.transpose(1, 2) @ s, dim=-1)
        pred = (q @ means.transpose(1, 2)).argmax(-1)
        counts = F.one_hot(pred, k).sum(1).float()
        truth = F.one_hot(b.query_targets.long(), k).sum(1).float()
        acc = float((pred == b.query_targets).float().mean())
        print(
            f"{name:28s} support-init acc {100 * acc:5.1f}  balanced: predicted "
            f"{100 * float(looks_balanced(counts).float().mean()):5.1f}%  true "
            f"{100 * float(looks_balanced(truth).float().mean()):5.1f}%",
            flush=True,
        )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
