"""``predict`` with a fine-tuned network: labels and outlier scores from one decode per image.

At scopes ``last`` / ``all`` a model has two networks: the fine-tuned one (the classifier's
embeddings) and the untrained one (outlier scores, :meth:`FewShotClassifier.outlier_score`).
``anyshot predict`` used to ask for probabilities and outlier scores in two calls, each
decoding every image; :meth:`FewShotClassifier.predict_proba_and_outlier_score` runs both
networks on each decoded batch. Side by side in one process, on the same saved model and
images, no feature cache, alternating the two (``--repeats`` each, a freshly loaded model
every time):

* ``two-calls``: ``predict_proba(paths)`` then ``outlier_score(paths)`` (the path before);
* ``one-call``: ``predict_proba_and_outlier_score(paths)``.

The model: Omniglot test characters written as class folders (``any_shot_practitioner``'s
``omni-20w15s`` cell: 20 classes, 15 labelled and 5 other images each), fitted at scope ``all``
(``presets.NETWORK``, one epoch: the fit's accuracy does not change the prediction's cost) at
the images' own 105 px; predicted: all 400 images.

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/predict_speed.py \\
        --output benchmarks/results/predict-speed.json
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from any_shot_practitioner import files, write_cell
from anyshot.classifier import FewShotClassifier
from anyshot.methods.presets import NETWORK
from harness.cli import DATA_ROOT
from harness.output import environment, write_json


def timed_predictions(model_file: Path, paths: list[str], variant: str) -> tuple[float, dict]:
    """Seconds of one variant's prediction on a freshly loaded model, and its answers."""
    model = FewShotClassifier.load(model_file).set_params(cache_dir=False, show_progress=False)
    began = time.perf_counter()
    scores: np.ndarray | None
    if variant == "two-calls":
        probabilities, scores = model.predict_proba(paths), model.outlier_score(paths)
    else:
        probabilities, scores = model.predict_proba_and_outlier_score(paths)
    return time.perf_counter() - began, {"probabilities": probabilities, "scores": scores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", type=Path, required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cell("omni-20w15s", 0, root / "cell", args.data_root, seed=0)
        support, labels = files(root / "cell" / "support")
        paths = [str(p) for p in support + files(root / "cell" / "query")[0]]
        method = dataclasses.replace(NETWORK, epochs=1)
        model = FewShotClassifier(
            method=method, image_size=105, cache_dir=False, show_progress=False
        )
        model.fit([str(p) for p in support], labels).save(root / "model.pt")
        seconds: dict[str, list[float]] = {"two-calls": [], "one-call": []}
        answers: dict[str, dict] = {}
        for _ in range(args.repeats):
            for variant in seconds:
                took, answers[variant] = timed_predictions(root / "model.pt", paths, variant)
                seconds[variant].append(took)
                print(f"{variant}: {took:.2f} s for {len(paths)} images", flush=True)
    difference = {
        key: float(np.abs(answers["two-calls"][key] - answers["one-call"][key]).max())
        for key in ("probabilities", "scores")
    }
    median = {variant: statistics.median(times) for variant, times in seconds.items()}
    result = {
        "images": len(paths),
        "image_size": model.preprocessing_.image_size,
        "seconds": seconds,
        "median_seconds": median,
        "speed_up": median["two-calls"] / median["one-call"],
        "max_abs_difference": difference,
        "environment": environment("torch", "torch_threads", "machine", "cpu_count"),
    }
    print(
        f"median {median['two-calls']:.2f} -> {median['one-call']:.2f} s "
        f"({result['speed_up']:.2f}x); largest difference {difference}"
    )
    write_json(args.output, result)


if __name__ == "__main__":
    main()
