"""Scope rule study (issue 16, val classes only): per episode, the head's and scope last's
accuracy, and signals the product can compute from the labelled (support) images alone.

One process, one thread. The episodes are those of ``anyshot evaluate`` (fixed protocol,
``build_sampler(..., seed=SEED)``), so the rows are paired: head and last see the same episode.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD/src python studies/scope-rule/study.py \
        --dataset omniglot --data-root ../shared/data/omniglot --image-size 84 \
        --ways 20 --shots 5 --queries 15 --episodes 20 --out studies/scope-rule/results/o20w5.jsonl

Rows (appended to ``--out`` as JSON lines, one per episode; a rerun skips the done indices):

* ``head``: ``--method finetune`` (RECOMMENDED_INDUCTIVE, scope head), fitted on the frozen
  features this script computes once per episode (the same features ``FineTuning.fit`` would
  compute: eval mode, ``backbone(x)``); its seconds = embedding + head fit.
* ``last``: ``--method finetune --scope last --lr 0.01 --network-lr 0.001 --temperature 0.1
  --epochs 25`` (PAPER_INDUCTIVE with those fields, as ``method_from_args`` builds it), run on
  the images by ``FineTuning.fit``.
* ``ncm``: support-based initialisation (class means, cosine) on the same features, for
  reference (no labels of the queries are used by anything but the accuracies).

Signals (support only): ImageNet head's mean max-softmax and normalised entropy, purity of its
top-1 within a class, leave-one-out nearest-class-mean accuracy (shots >= 2), mean cosine
between class means, mean cosine of an image to its own class mean, mean feature norm.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from anyshot.backbones import load_backbone
from anyshot.data import load_dataset
from anyshot.episodes import make_episode
from anyshot.methods import network
from anyshot.methods.presets import PAPER_INDUCTIVE, RECOMMENDED_INDUCTIVE
from anyshot.protocols import build_sampler


def methods(seed: int, batch_size: int):
    common = {"relu": True, "batch_size": batch_size, "device": None, "seed": seed}
    head = dataclasses.replace(RECOMMENDED_INDUCTIVE, **common)
    last = dataclasses.replace(
        PAPER_INDUCTIVE,
        **common,
        scope="last",
        lr=0.01,
        network_lr=0.001,
        temperature=0.1,
        epochs=25,
    )
    return head, last


@torch.inference_mode()
def embed(backbone, images: torch.Tensor, batch_size: int):
    """Trunk activations, features ``backbone(x)`` (1280-d pooled) and ImageNet logits, eval
    mode, ``batch_size`` images per pass (as ``frozen_forward`` computes them)."""
    backbone.eval()
    trunks, feats, logits = [], [], []
    for start in range(0, len(images), batch_size):
        a = backbone.forward_trunk(images[start : start + batch_size])
        f = backbone.forward_features(a)
        trunks.append(a.float())
        feats.append(f.float())
        logits.append(backbone.classifier(f).float())
    return torch.cat(trunks), torch.cat(feats), torch.cat(logits)


class SharedTrunk:
    """Scope last computes the frozen trunk's activations of the support and the query with
    ``anyshot.methods.network.frozen_forward``; hand it the ones this script already computed
    (same function, same batches, eval mode: the same tensors) instead of a second pass."""

    def __init__(self) -> None:
        self.original = network.frozen_forward
        self.known: list[tuple[object, torch.Tensor]] = []
        network.frozen_forward = self

    def __call__(self, module, images, **kwargs):
        for known_images, activations in self.known:
            if images is known_images and kwargs.get("function") is not None:
                return activations.clone()
        return self.original(module, images, **kwargs)


def signals(feats: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, ways: int) -> dict:
    p = logits.softmax(-1)
    maxprob = p.max(-1).values
    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1) / math.log(p.shape[-1])
    top1 = p.argmax(-1)
    z = F.normalize(F.relu(feats), dim=-1)
    means = torch.stack([z[targets == k].mean(0) for k in range(ways)])
    unit_means = F.normalize(means, dim=-1)
    cos = unit_means @ unit_means.T
    off = cos[~torch.eye(ways, dtype=torch.bool)]
    counts = torch.bincount(targets, minlength=ways)
    # image-level pairs of different classes: expectations that do not depend on the shots
    other = targets.unsqueeze(0) != targets.unsqueeze(1)
    pair_cos = (z @ z.T)[other]
    pair_same = (p @ p.T)[other]  # chance that the ImageNet head names both the same class
    pair_top1 = (top1.unsqueeze(0) == top1.unsqueeze(1))[other].float()
    marginal = p.mean(0)
    marginal_entropy = float(-(marginal * marginal.clamp_min(1e-12).log()).sum()) / math.log(
        p.shape[-1]
    )
    out = {
        # how varied the ImageNet head's answers are over the support: images all alike to
        # ImageNet (strokes on paper: "envelope", "crossword") give a peaked mean prediction
        "inet_marginal_entropy": marginal_entropy,
        "inet_mutual_info": marginal_entropy - float(entropy.mean()),
        "inet_distinct_top1": len(set(top1.tolist())) / len(top1),
        "inet_top1_share": float(torch.bincount(top1).max()) / len(top1),
        "inet_maxprob": float(maxprob.mean()),
        "cross_cos": float(pair_cos.mean()),
        "inet_pair_same": float(pair_same.mean()),
        "inet_pair_top1": float(pair_top1.mean()),
        "inet_entropy": float(entropy.mean()),
        "between_cos": float(off.mean()),
        "between_cos_max": float(cos.masked_fill(torch.eye(ways, dtype=torch.bool), -2).max(1).values.mean()),
        "feat_norm": float(feats.norm(dim=-1).mean()),
        "relu_norm": float(F.relu(feats).norm(dim=-1).mean()),
    }
    if int(counts.min()) >= 2:
        purity = []
        for k in range(ways):
            t = top1[targets == k]
            purity.append(float(torch.bincount(t).max()) / len(t))
        out["inet_purity"] = sum(purity) / len(purity)
        # leave-one-out nearest class mean (cosine) on the support
        sums = torch.stack([z[targets == k].sum(0) for k in range(ways)])  # [K, D]
        correct = 0
        within = []
        for i in range(len(z)):
            k = int(targets[i])
            m = sums.clone()
            m[k] = (m[k] - z[i]) / (counts[k] - 1)
            others = torch.ones(ways, dtype=torch.bool)
            others[k] = False
            m[others] = m[others] / counts[others].unsqueeze(1)
            sim = F.normalize(m, dim=-1) @ z[i]
            correct += int(int(sim.argmax()) == k)
            within.append(float(sim[k]))
        out["loo_ncm"] = correct / len(z)
        out["within_cos"] = sum(within) / len(within)  # cosine to own class mean (LOO)
        out["margin_cos"] = out["within_cos"] - out["between_cos"]
    return out


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return float((logits.argmax(-1) == targets).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--image-size", type=int, required=True)
    ap.add_argument("--ways", type=int, required=True)
    ap.add_argument("--shots", type=int, required=True)
    ap.add_argument("--queries", type=int, required=True)
    ap.add_argument("--episodes", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rows", default="head,last", help="head,last or signals (signals only)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-share-trunk", dest="share_trunk", action="store_false")
    args = ap.parse_args()
    assert args.split != "test", "validation study: never the test classes"
    torch.set_num_threads(1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {json.loads(line)["index"] for line in out.read_text().splitlines() if line}
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        backbone = load_backbone("efficientnet-lite0", image_size=args.image_size)
    backbone.eval()
    dataset = load_dataset(args.dataset, Path(args.data_root), args.split)
    sampler = build_sampler(
        "fixed", dataset.labels, ways=args.ways, shots=args.shots, queries=args.queries,
        seed=args.seed,
    )
    head, last = methods(args.seed, args.batch_size)
    rows = args.rows.split(",")
    shared = SharedTrunk() if args.share_trunk else None
    for index, spec in enumerate(sampler.take(args.episodes)):
        if index in done:
            continue
        t0 = time.perf_counter()
        episode = make_episode(dataset, spec, backbone.preprocessing)
        t_load = time.perf_counter() - t0
        st, qt = episode.support_targets, episode.query_targets
        t0 = time.perf_counter()
        sa, sf, sl = embed(backbone, episode.support, args.batch_size)
        t_embed_support = time.perf_counter() - t0
        t0 = time.perf_counter()
        if rows == ["signals"]:  # signals only (for cells run before a signal was added)
            qa = qf = None
        else:
            qa, qf, _ = embed(backbone, episode.query, args.batch_size)
        t_embed_query = time.perf_counter() - t0
        t0 = time.perf_counter()
        sig = signals(sf, sl, st, episode.ways)
        t_signals = time.perf_counter() - t0
        rec = {
            "dataset": args.dataset, "image_size": args.image_size, "ways": args.ways,
            "shots": args.shots, "queries": args.queries, "seed": args.seed, "index": index,
            "classes": list(spec.classes), **sig,
            "sec_load": t_load, "sec_embed_support": t_embed_support,
            "sec_embed_query": t_embed_query, "sec_signals": t_signals,
        }
        if qf is None:
            with out.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            continue
        # support-based init (reference)
        zs = F.normalize(F.relu(sf), dim=-1)
        zq = F.normalize(F.relu(qf), dim=-1)
        means = F.normalize(torch.stack([zs[st == k].mean(0) for k in range(episode.ways)]), dim=-1)
        rec["acc_ncm"] = accuracy(zq @ means.T, qt)
        if "head" in rows:
            t0 = time.perf_counter()
            fitted = head.fit_features(sf, st, qf, ways=episode.ways)
            rec["sec_head_fit"] = time.perf_counter() - t0
            rec["sec_head"] = rec["sec_head_fit"] + t_embed_support + t_embed_query
            rec["acc_head"] = accuracy(fitted.query_logits[0], qt)
        if "last" in rows:
            if shared is not None:
                shared.known = [(episode.support, sa), (episode.query, qa)]
            t0 = time.perf_counter()
            logits = last(backbone, episode)
            rec["sec_last_train"] = time.perf_counter() - t0
            # what the product would spend: the trunk pass (shared here) + the training
            shared_time = t_embed_support + t_embed_query if shared is not None else 0.0
            rec["sec_last"] = rec["sec_last_train"] + shared_time
            rec["acc_last"] = accuracy(logits, qt)
        with out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(
            f"{out.stem} ep {index}: head {rec.get('acc_head', float('nan')):.3f} "
            f"last {rec.get('acc_last', float('nan')):.3f} ncm {rec['acc_ncm']:.3f} "
            f"maxprob {sig['inet_maxprob']:.3f} loo {sig.get('loo_ncm', float('nan')):.3f} "
            f"t_head {rec.get('sec_head', 0):.1f}s t_last {rec.get('sec_last', 0):.1f}s "
            f"load {t_load:.1f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
