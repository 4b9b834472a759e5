"""Support-init's confidences through the product's estimator (``FewShotClassifier``, what
``classify --method support-init`` runs) at 1 and 5 shots, and at 5 shots with the previous
``tau`` (0.46 at any shots): mini-ImageNet val images at the default 224 px, 5 classes, 15
queries per class, 20 seeded draws."""
import csv
import dataclasses
import random
import sys

import numpy as np
from anyshot.classifier import FewShotClassifier
from anyshot.methods.presets import SUPPORT_INIT
from anyshot.calibration import expected_calibration_error
root = "/work/shared/data/mini-imagenet"
rows = list(csv.DictReader(open(f"{root}/val.csv")))
by = {}
for r in rows:
    by.setdefault(r["label"], []).append(f"{root}/images/{r['filename']}")
clf_args = dict(cache_dir=sys.argv[1] if len(sys.argv) > 1 else None)
BEFORE = dataclasses.replace(SUPPORT_INIT, confidence_shots_power=0.0)  # 0.46 at any shots
for shots, method in ((1, SUPPORT_INIT), (5, SUPPORT_INIT), (5, BEFORE)):
    conf, right = [], []
    for draw in range(20):
        rng = random.Random(draw)
        classes = rng.sample(sorted(by), 5)
        sup, lab, qry, qlab = [], [], [], []
        for c in classes:
            files = rng.sample(by[c], shots + 15)
            sup += files[:shots]; lab += [c] * shots; qry += files[shots:]; qlab += [c] * 15
        model = FewShotClassifier(method=method, **clf_args).fit(sup, lab)
        proba = model.predict_proba(qry)
        pred = np.asarray(model.classes_)[proba.argmax(1)]
        conf += list(proba.max(1)); right += list(pred == np.asarray(qlab))
    conf, right = np.asarray(conf), np.asarray(right)
    print(f"{shots} shots: accuracy {right.mean():.3f}, mean confidence {conf.mean():.3f}, ECE {100 * expected_calibration_error(conf, right):.1f}%, tau {method.confidence_tau(shots):.3f}")

# python studies/present-calibration/classifier_check.py CACHE_DIR > classifier_check.txt
