"""Scope-curve study (issue 16, val classes only): what to train as the labelled set grows.

Per episode, on the same images: support-init (class means), the inductive head (the default's
fallback), the default (given the held-out images as its unlabelled images, as ``classify``
does), the logistic-regression anchor on frozen features, the product's network scopes
``last`` and ``all`` (:class:`~anyshot.methods.FineTuning`: head lr 1e-2, network lr 1e-3, T 0.1,
25 full-batch epochs, as in ``studies/scope-rule``; ``all`` with the pre-training
augmentations), and the full fine-tuning anchor of ``benchmarks/transfer_anchor.py`` (standard
transfer recipe). Also the support-only signal ``cross_cos`` of ``studies/scope-rule``.

Domains: mini-ImageNet val (224 px, ImageNet classes: close to the backbone's training),
Omniglot val (84 px, far from it) and scikit-learn's bundled handwritten digits (8x8 pixels
upscaled to 64 px, far; 10 classes, about 180 images each, written once as a class-per-folder
tree). Episodes are drawn in rounds (episode 0 of every cell, then episode 1, ...; the
200-shot cell two rounds late) until ``--deadline`` seconds, so a short run covers every cell.
Scope ``all``'s batch-norm: ``all`` keeps the stored statistics (``norm_statistics=
"pretrained"``), ``all-batch`` is training mode (``"batch"``, the product's scope ``all`` before
this study), ``all-episode`` training mode then statistics re-estimated on the episode
(``"episode"``). ``all-paper`` / ``all-paper-transductive``: what ``--scope all`` of the
command line runs (the paper's settings), inductive / transductive; ``all-paper-episode``: the
paper's inductive settings with ``norm_statistics="episode"``.

    PYTHONPATH=src:benchmarks python studies/scope-curve/run.py --data-root DATA \
        --out results.jsonl --deadline 420
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from anyshot.backbones import load_backbone
from anyshot.data import load_dataset
from anyshot.episodes import make_episode
from anyshot.methods.presets import (
    NETWORK,
    PAPER,
    PAPER_INDUCTIVE,
    RECOMMENDED,
    RECOMMENDED_INDUCTIVE,
)
from anyshot.methods.scope_rule import ScopeRule
from anyshot.protocols import build_sampler
from any_shot_curve import fitted_regression
from any_shot_practitioner import write_digits
from transfer_anchor import TransferRecipe, full_finetune

#: tag -> (dataset, image size, ways, shots, queries per class, episodes)
CELLS = {
    "m224-10w1": ("mini-imagenet", 224, 10, 1, 10, 6),
    "m224-10w5": ("mini-imagenet", 224, 10, 5, 10, 6),
    "m224-10w20": ("mini-imagenet", 224, 10, 20, 10, 5),
    "m224-10w100": ("mini-imagenet", 224, 10, 100, 10, 3),
    "m224-10w200": ("mini-imagenet", 224, 10, 200, 10, 2),
    "o84-20w1": ("omniglot", 84, 20, 1, 5, 6),
    "o84-20w5": ("omniglot", 84, 20, 5, 5, 6),
    "o84-20w15": ("omniglot", 84, 20, 15, 5, 6),
    "d64-10w1": ("digits", 64, 10, 1, 20, 6),
    "d64-10w5": ("digits", 64, 10, 5, 20, 6),
    "d64-10w20": ("digits", 64, 10, 20, 20, 5),
    "d64-10w100": ("digits", 64, 10, 100, 20, 4),
}
ROWS = ("ncm", "inductive", "default", "lr", "last", "all", "all-batch", "all-episode", "fullft")
#: ``auto``: the product's ``--scope auto`` (:class:`~anyshot.methods.scope_rule.ScopeRule`,
#: no time limit: the rule's accuracy, not the machine's speed), given the held-out images.



def schedule(names: list[str]) -> list[tuple[str, int]]:
    """(cell, episode index) in rounds; the heaviest cell's episodes two rounds late."""
    heavy = {n for n in names if CELLS[n][3] >= 200}
    pairs = [(n, i) for n in names for i in range(CELLS[n][5])]
    return sorted(pairs, key=lambda p: (p[1] + (2 if p[0] in heavy else 0), names.index(p[0])))


def network_methods(seed: int, batch_size: int, device: str, flip: bool):
    """The product's scopes last and all (the scope-rule study's settings)."""
    common = dict(
        relu=True, batch_size=batch_size, device=device, seed=seed, lr=0.01,
        network_lr=0.001, temperature=0.1, epochs=25,
    )
    last = dataclasses.replace(PAPER_INDUCTIVE, scope="last", **common)
    every = dataclasses.replace(
        PAPER_INDUCTIVE, scope="all", augment=True, flip=flip, norm_statistics="pretrained",
        **common,
    )
    return last, every



@torch.inference_mode()
def embed(backbone, images: torch.Tensor, device: str, batch: int) -> torch.Tensor:
    """Frozen features ``[N, D]`` (eval mode), on the CPU."""
    return torch.cat([backbone(c.to(device)).float().cpu() for c in images.split(batch)])


def cross_cos(features: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean cosine between ReLU'd features of labelled images of different classes."""
    z = F.normalize(F.relu(features), dim=-1)
    other = targets.unsqueeze(0) != targets.unsqueeze(1)
    return float((z @ z.T)[other].mean())


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return float((logits.argmax(-1).cpu() == targets).float().mean())


def run_episode(tag, index, dataset, backbone, rows, args) -> dict:
    name, size, ways, shots, queries, _ = CELLS[tag]
    sampler = build_sampler(
        "fixed", dataset.labels, ways=ways, shots=shots, queries=queries, seed=args.seed
    )
    spec = next(s for i, s in enumerate(sampler.take(index + 1)) if i == index)
    t0 = time.perf_counter()
    episode = make_episode(dataset, spec, backbone.preprocessing)
    rec: dict = {"cell": tag, "index": index, "classes": list(spec.classes)}
    rec["sec_load"] = time.perf_counter() - t0
    st, qt = episode.support_targets, episode.query_targets
    t0 = time.perf_counter()
    sf = embed(backbone, episode.support, args.device, args.batch_size)
    qf = embed(backbone, episode.query, args.device, args.batch_size)
    rec["sec_embed"] = time.perf_counter() - t0
    rec["cross_cos"] = cross_cos(sf, st)
    flip = name == "mini-imagenet"
    last, every = network_methods(args.seed, args.batch_size, args.device, flip)
    fns = {
        "ncm": lambda: F.normalize(F.relu(qf), dim=-1)
        @ F.normalize(torch.stack([F.normalize(F.relu(sf), dim=-1)[st == k].mean(0)
                                   for k in range(ways)]), dim=-1).T,
        "inductive": lambda: RECOMMENDED_INDUCTIVE.fit_features(sf, st, qf, ways=ways).query_logits[0],
        "default": lambda: RECOMMENDED.fit_features(sf, st, qf, ways=ways).query_logits[0],
        "lr": lambda: torch.from_numpy(
            fitted_regression(sf.double().numpy(), st.numpy()).decision_function(qf.double().numpy())
        ),
        "last": lambda: last(backbone, episode),
        "all": lambda: every(backbone, episode),
        "all-batch": lambda: dataclasses.replace(every, norm_statistics="batch")(backbone, episode),
        "all-episode": lambda: dataclasses.replace(every, norm_statistics="episode")(
            backbone, episode
        ),
        # ``--scope all`` of the command line today: the paper's settings (T 1, Adam 5e-5)
        "all-paper": lambda: dataclasses.replace(
            PAPER_INDUCTIVE, batch_size=args.batch_size, device=args.device, flip=flip
        )(backbone, episode),
        "all-paper-episode": lambda: dataclasses.replace(
            PAPER_INDUCTIVE, batch_size=args.batch_size, device=args.device, flip=flip,
            norm_statistics="episode",
        )(backbone, episode),
        "all-paper-transductive": lambda: dataclasses.replace(
            PAPER, batch_size=args.batch_size, device=args.device, flip=flip
        )(backbone, episode),
        "fullft": lambda: full_finetune(
            backbone, episode.support, st, episode.query, ways,
            recipe=TransferRecipe(flip=flip, epochs=args.ft_epochs), seed=args.seed + index,
            device=args.device,
        ),
    }
    rule = ScopeRule(
        head=dataclasses.replace(RECOMMENDED, device=args.device),
        network=dataclasses.replace(
            NETWORK, batch_size=args.batch_size, device=args.device, seed=args.seed
        ),
        time_budget=1e9,
    )

    def auto() -> torch.Tensor:
        choice = rule.choose(backbone, episode)
        rec["auto_scope"] = f"{choice.scope}/{getattr(choice.method, 'norm_statistics', '')}"
        return choice.method(backbone, episode)

    fns["auto"] = auto
    for row in rows:
        t0 = time.perf_counter()
        rec[f"acc_{row}"] = accuracy(fns[row](), qt)
        rec[f"sec_{row}"] = time.perf_counter() - t0
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, required=True, help="holds mini-imagenet/, omniglot/")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--deadline", type=float, default=420.0, help="seconds; no episode starts after")
    ap.add_argument("--episodes", type=int, default=None, help="cap on episodes per cell")
    ap.add_argument("--ft-epochs", type=int, default=15)
    ap.add_argument("--digits-dir", type=Path, default=Path("/tmp/anyshot-digits"),
                    help="where the digits' class folders are written")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="val", help="val (the study) or test (the check)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    began = time.perf_counter()
    torch.backends.cudnn.benchmark = True
    names = args.cells.split(",")
    rows = args.rows.split(",")
    digits_root = write_digits(args.digits_dir) if any(
        CELLS[n][0] == "digits" for n in names) else None
    datasets, backbones = {}, {}
    for tag, index in schedule(names):
        if args.episodes is not None and index >= args.episodes:
            continue
        if time.perf_counter() - began > args.deadline:
            print(f"deadline reached before {tag} episode {index}", flush=True)
            break
        name, size = CELLS[tag][0], CELLS[tag][1]
        if name not in datasets:
            root = digits_root if name == "digits" else args.data_root / name
            split = "val" if name == "digits" else args.split
            datasets[name] = load_dataset("folder" if name == "digits" else name, root, split)
        if size not in backbones:
            torch.manual_seed(0)
            backbones[size] = load_backbone("efficientnet-lite0", image_size=size).to(args.device).eval()
        rec = run_episode(tag, index, datasets[name], backbones[size], rows, args)
        with args.out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        accs = " ".join(f"{r} {rec['acc_' + r]:.3f}" for r in rows)
        secs = " ".join(f"{rec['sec_' + r]:.1f}" for r in rows)
        print(f"{tag} ep{index}: {accs} | s {secs} | t={time.perf_counter() - began:.0f}", flush=True)


if __name__ == "__main__":
    main()
