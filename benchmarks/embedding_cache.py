"""Frozen-backbone embeddings of dataset items, computed once and kept on disk in parts.

Used by ``benchmarks/honest_evaluation.py``: every image the episodes need is embedded once
(eval mode, no augmentation) and every head-scope method then runs on the cached rows. The cache
is a folder of ``part-NNNNN.pt`` files, each ``{"items": LongTensor [n], "features": FloatTensor
[n, D]}``, written atomically, so an interrupted run keeps what it finished.

    python benchmarks/embedding_cache.py --dataset omniglot --data-root ../shared/data/omniglot \\
        --split test --image-size 84 --cache-dir /tmp/anyshot-embeddings --all
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from anyshot.backbones.base import Backbone
from anyshot.data import ImageDataset, load_dataset
from anyshot.io import atomic_write_bytes
from anyshot.methods.frozen import frozen_forward
from anyshot.progress import progress_bar

PART_SIZE = 2048


def cache_folder(cache_dir: Path, dataset: str, split: str, backbone: str, image_size: int) -> Path:
    """Where the parts of one (dataset, split, backbone, image size) live."""
    return cache_dir / f"{dataset}-{split}-{backbone}-{image_size}px"


def load_cache(folder: Path) -> dict[int, torch.Tensor]:
    """Item index -> feature row ``[D]`` from every part in ``folder`` (empty if none)."""
    features: dict[int, torch.Tensor] = {}
    for part in sorted(folder.glob("part-*.pt")):
        data = torch.load(part, weights_only=True)
        for item, row in zip(data["items"].tolist(), data["features"], strict=True):
            features[int(item)] = row
    return features


def embed_items(
    backbone: Backbone,
    dataset: ImageDataset,
    items: Sequence[int],
    folder: Path | None,
    *,
    batch_size: int = 64,
    show_progress: bool = True,
) -> tuple[dict[int, torch.Tensor], float]:
    """Features ``{item: [D]}`` of ``items``, reading and extending the cache in ``folder``.

    Returns the features and the seconds spent embedding (0 when everything was cached).
    """
    features = load_cache(folder) if folder is not None else {}
    missing = sorted({int(i) for i in items} - set(features))
    start = time.perf_counter()
    existing = len(list(folder.glob("part-*.pt"))) if folder is not None else 0
    chunks = [missing[i : i + PART_SIZE] for i in range(0, len(missing), PART_SIZE)]
    for number, chunk in enumerate(
        progress_bar(chunks, desc="embedding", enabled=show_progress, unit="part")
    ):
        rows = frozen_forward(
            backbone, dataset.images(chunk, backbone.preprocessing), batch_size=batch_size
        )
        for item, row in zip(chunk, rows, strict=True):
            features[item] = row
        if folder is not None:
            buffer = io.BytesIO()
            torch.save({"items": torch.tensor(chunk), "features": rows}, buffer)
            atomic_write_bytes(folder / f"part-{existing + number:05d}.pt", buffer.getvalue())
    return features, (time.perf_counter() - start) if missing else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--image-size", type=int, default=84)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--all", action="store_true", help="embed every item of the split")
    args = parser.parse_args()
    from anyshot.backbones import load_backbone

    backbone = load_backbone(args.backbone, image_size=args.image_size)
    dataset = load_dataset(args.dataset, args.data_root, args.split)
    folder = cache_folder(args.cache_dir, args.dataset, args.split, args.backbone, args.image_size)
    items = range(len(dataset)) if args.all else []
    features, seconds = embed_items(backbone, dataset, list(items), folder)
    print(f"{len(features)} items cached in {folder}; embedded for {seconds:.1f} s")


if __name__ == "__main__":
    main()
