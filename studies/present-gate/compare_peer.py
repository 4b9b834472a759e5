"""The default (the chosen rule, derived as in derive.py) beside a stored peer on the cells
where both ran (VALIDATION classes only).

    cd studies/present-gate && PYTHONPATH=$PWD/../../src python compare_peer.py [alpha-tim]
"""
from __future__ import annotations

import glob
import os
import sys

import torch

from derive import acc, load_cells, rule

OUT = os.environ.get("ANYSHOT_STUDY_OUT", "out")


def main() -> None:
    peer = sys.argv[1] if len(sys.argv) > 1 else "alpha-tim"
    peers = {}
    for path in glob.glob(f"{OUT}/pg/*.pt"):
        store = torch.load(path)
        if peer in store:
            peers[os.path.basename(path)[:-3].replace("_", " ")] = store[peer].float().argmax(-1)
    print(f"{'cell':28s} support-init  previous  default  {peer}")
    for cell in load_cells():
        if cell["name"] not in peers:
            continue
        y = cell["y"]
        si, ci = acc(cell["support-init"], y)
        previous = acc(rule(cell, "si", 6, 0.5, "si>si"), y)[0]
        default = acc(rule(cell, "raw", 6, 0.5, "si>si"), y)[0]
        other, other_ci = acc(peers[cell["name"]], y)
        print(f"{cell['name']:28s} {si:5.1f}±{ci:3.1f}    {previous:5.1f}    {default:5.1f}   "
              f"{other:5.1f}±{other_ci:3.1f}")


if __name__ == "__main__":
    main()
