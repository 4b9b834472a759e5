"""Early-stopping probe (issue 16, val classes only): does a held-out share of the labelled
images pick a better epoch than the fixed 25 of scope ``all``?

Per episode (Omniglot val characters at 84 px, scikit-learn's digits at 64 px; the scope-curve
study's cells), on the same images:

* ``full``: the product's network fit as ``--scope auto`` runs it on these domains
  (``presets.NETWORK``; batch-norm statistics of the episode from 5 labelled images per class),
  every labelled image, 25 epochs: the query accuracy;
* ``held``: the same settings on ``1 - fraction`` of each class's labelled images (a seeded,
  stratified draw), ``--epochs`` epochs, the held-out images' accuracy *and* the query accuracy
  recorded before every epoch and after the last (eval mode, statistics re-estimated on the
  episode first when the fit uses the episode's): the curves an early-stopping rule would see,
  and what each epoch it could pick would score.

``analyze.py`` turns the curves into rules (best held-out epoch, with patience; the last
epoch) and compares them with ``full``. The per-epoch probe wraps the product's training run
(``anyshot.methods.network._Run``) without changing it: the recording happens before each
support step, on copies of nothing the training uses (batch-norm's running statistics are
only read in eval mode, and re-estimated after training anyway).

    cd studies/early-stopping
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD/../../src:$PWD/../../benchmarks python probe.py \
        --data-root ../../../shared/data --cells o84-20w15,o84-20w10 --out results/omni.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

import anyshot.methods.network as network_module
from any_shot_practitioner import write_digits
from anyshot.backbones import load_backbone
from anyshot.data import load_dataset
from anyshot.episodes import Episode, make_episode
from anyshot.methods.network import (
    _embed,
    episode_statistics,
    train_network,
    trainable_network,
)
from anyshot.methods.presets import NETWORK
from anyshot.protocols import build_sampler

#: tag -> (dataset, image size, ways, shots, queries per class, episodes)
CELLS = {
    "o84-20w10": ("omniglot", 84, 20, 10, 5, 3),
    "o84-20w15": ("omniglot", 84, 20, 15, 5, 3),
    "d64-10w20": ("digits", 64, 10, 20, 20, 3),
    "d64-10w50": ("digits", 64, 10, 50, 20, 3),
    "d64-10w100": ("digits", 64, 10, 100, 20, 3),
}


def held_out_split(targets: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """``[S]`` bool, True for the held-out labelled images: ``round(fraction * n)`` (at least
    one) of each class's ``n``, a seeded draw."""
    generator = torch.Generator().manual_seed(seed)
    held = torch.zeros(len(targets), dtype=torch.bool)
    for k in targets.unique():
        members = (targets == k).nonzero().flatten()
        count = max(1, round(fraction * len(members)))
        held[members[torch.randperm(len(members), generator=generator)[:count]]] = True
    return held


class Recorder:
    """Wraps ``_Run`` so that each support step first records held-out and query accuracy."""

    def __init__(self, held_images, held_targets, query_targets, statistics: bool, batch: int):
        self.held_images, self.held_targets = held_images, held_targets
        self.query_targets, self.statistics, self.batch = query_targets, statistics, batch
        self.curve: list[tuple[float, float]] = []

    def record(self, run, classifier) -> None:
        net = run.network
        if self.statistics:
            episode_statistics(net, self.batch)
        with torch.no_grad():
            held = classifier(_embed(net, self.held_images, self.batch)).argmax(1).cpu()
            query = classifier(_embed(net, net.query, self.batch)).argmax(1).cpu()
        self.curve.append(
            (
                float((held == self.held_targets).float().mean()),
                float((query == self.query_targets).float().mean()),
            )
        )

    def install(self) -> None:
        recorder = self

        class ProbeRun(network_module._Run):  # type: ignore[name-defined,misc]
            def _support_step(self, classifier):
                recorder.record(self, classifier)
                super()._support_step(classifier)

        network_module._Run = ProbeRun  # type: ignore[misc]


def fit_logits(method, backbone, episode: Episode) -> tuple[torch.Tensor, float]:
    began = time.perf_counter()
    return method(backbone, episode), time.perf_counter() - began


def run_episode(tag: str, index: int, dataset, backbone, args) -> dict:
    _, _, ways, shots, queries, _ = CELLS[tag]
    sampler = build_sampler(
        "fixed", dataset.labels, ways=ways, shots=shots, queries=queries, seed=args.seed
    )
    spec = next(s for i, s in enumerate(sampler.take(index + 1)) if i == index)
    episode = make_episode(dataset, spec, backbone.preprocessing)
    statistics = "episode" if shots >= 5 else "pretrained"
    method = dataclasses.replace(
        NETWORK, norm_statistics=statistics, batch_size=args.batch_size, seed=args.seed
    )
    rec: dict = {"cell": tag, "index": index, "classes": list(spec.classes)}
    qt = episode.query_targets
    logits, rec["sec_full"] = fit_logits(method, backbone, episode)
    rec["acc_full"] = float((logits.argmax(1) == qt).float().mean())

    st = episode.support_targets
    held = held_out_split(st, args.fraction, args.seed + index)
    support = episode.support[~held]
    train = Episode(
        support,
        [episode.classes[int(t)] for t in st[~held]],
        episode.query,
        [episode.classes[int(t)] for t in qt],
        episode.classes,
    )
    recorder = Recorder(
        episode.support[held], st[held], qt, statistics == "episode", args.batch_size
    )
    original = network_module._Run
    recorder.install()
    try:
        settings = dataclasses.replace(method, epochs=args.epochs).network_training()
        began = time.perf_counter()
        network = trainable_network(settings, backbone, train, torch.device("cpu"))
        tuned = train_network(settings, network, train.support_targets, ways)
        rec["sec_held"] = time.perf_counter() - began
        net = network.model.eval()  # the state after the last epoch (statistics re-estimated)
        with torch.no_grad():
            last_held = tuned.classifier(
                torch.cat([net(b) for b in episode.support[held].split(args.batch_size)])
            ).argmax(1)
        recorder.curve.append(
            (
                float((last_held == st[held]).float().mean()),
                float((tuned.query_logits.argmax(1) == qt).float().mean()),
            )
        )
    finally:
        network_module._Run = original
    rec["curve"] = recorder.curve  # [(held-out acc, query acc)] after 0..epochs epochs
    rec["fallback"] = tuned.fallback
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--episodes", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--fraction", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--digits-dir", type=Path, default=Path("/tmp/anyshot-digits"))
    args = ap.parse_args()
    names = args.cells.split(",")
    pairs = sorted(((n, i) for n in names for i in range(CELLS[n][5])), key=lambda p: p[1])
    datasets, backbones = {}, {}
    for tag, index in pairs:
        if args.episodes is not None and index >= args.episodes:
            continue
        name, size = CELLS[tag][0], CELLS[tag][1]
        if name not in datasets:
            root = write_digits(args.digits_dir) if name == "digits" else args.data_root / name
            kind = "folder" if name == "digits" else name
            datasets[name] = load_dataset(kind, root, "val")
        if size not in backbones:
            backbones[size] = load_backbone("efficientnet-lite0", image_size=size).eval()
        rec = run_episode(tag, index, datasets[name], backbones[size], args)
        with args.out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        best = max(range(len(rec["curve"])), key=lambda e: rec["curve"][e][0])
        print(
            f"{tag} ep{index}: full {rec['acc_full']:.3f} ({rec['sec_full']:.0f}s) | held-out "
            f"curve last {rec['curve'][-1]} at 25 {rec['curve'][25]} best-held e{best} "
            f"{rec['curve'][best]} ({rec['sec_held']:.0f}s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
