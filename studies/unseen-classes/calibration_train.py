"""``benchmarks/calibration.py`` on Omniglot TRAINING classes (the subset of ``grid_train.py``):
the shipped confidences' ECE on classes no calibration rule was fitted on. mini-ImageNet's
train images are often not shipped: its val classes stand in (they are the rule's own tuning
classes; read the Omniglot rows).

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks:studies/unseen-classes python \
        studies/unseen-classes/calibration_train.py --split val --threads 1 --output cal.json
"""
from __future__ import annotations

import calibration
import grid_train


def main() -> None:
    values = grid_train.take_options()
    calibration.dataset_split = grid_train.train_subsets(calibration.dataset_split, values)
    calibration.main()


if __name__ == "__main__":
    main()
