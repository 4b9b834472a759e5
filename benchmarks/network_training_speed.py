"""Network fine-tuning on a CPU: channels-last against the default layout, side by side.

``presets.NETWORK`` (scope ``all``, what ``--scope auto`` trains on images far from ImageNet)
on EfficientNet-Lite0, the same seeded episodes either way:

* ``seconds_per_image``: the measured training pass of ``FineTuning.seconds_per_image`` (16
  images, forward and backward) at 84, 105 and 224 px, in the default layout and channels-last,
  each also under bfloat16 autocast (probed, not shipped);
* a whole fit of 20-way 5-shot Omniglot test episodes at 105 px (the characters' own size, as
  ``--scope auto`` trains them; batch-norm statistics of the episode, 25 epochs): wall time and
  query accuracy (5 per class).

"off" runs the same code with :func:`anyshot.methods.network.channels_last` replaced by the
identity (the layout before it). ``--episodes 0`` runs the probes alone.

    OMP_NUM_THREADS=2 PYTHONPATH=src:benchmarks .venv/bin/python \\
        benchmarks/network_training_speed.py --output benchmarks/results/network-training-speed.json
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

import anyshot.methods.network as network_module
from anyshot.backbones import load_backbone
from anyshot.data import load_dataset
from anyshot.episodes import Episode, make_episode
from anyshot.methods.presets import NETWORK
from anyshot.protocols import build_sampler
from harness.cli import DATA_ROOT
from harness.output import environment, write_json

LAYOUT = network_module.channels_last


def layout(on: bool) -> None:
    """Channels-last training on (the product) or off (the identity)."""
    network_module.channels_last = LAYOUT if on else (lambda value, device: value)


def probe(size: int, on: bool, bfloat16: bool) -> float:
    """Seconds per image of a training pass at ``size`` px (the second of two calls), under
    bfloat16 autocast when asked."""
    layout(on)
    backbone = load_backbone("efficientnet-lite0", image_size=size).eval()
    images = torch.randn(16, 3, size, size, generator=torch.Generator().manual_seed(0))
    episode = Episode(images, [i % 4 for i in range(16)], images[:0])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        NETWORK.seconds_per_image(backbone, episode)
        return NETWORK.seconds_per_image(backbone, episode)


def fit(index: int, on: bool, data_root: Path) -> dict[str, Any]:
    """One 20-way 5-shot Omniglot test episode at 105 px: seconds and accuracy."""
    layout(on)
    dataset = load_dataset("omniglot", data_root / "omniglot", "test")
    backbone = load_backbone("efficientnet-lite0", image_size=105).eval()
    sampler = build_sampler("fixed", dataset.labels, ways=20, shots=5, queries=5, seed=0)
    spec = list(sampler.take(index + 1))[index]
    episode = make_episode(dataset, spec, backbone.preprocessing)
    method = dataclasses.replace(NETWORK, norm_statistics="episode")
    began = time.perf_counter()
    logits = method(backbone, episode)
    seconds = time.perf_counter() - began
    truth = torch.as_tensor(episode.query_targets)
    accuracy = float((logits.argmax(1) == truth).float().mean())
    return {"episode": index, "channels_last": on, "seconds": seconds, "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    probes = []
    for size in (84, 105, 224):
        for on in (False, True):
            for bfloat16 in (False, True):
                seconds = probe(size, on, bfloat16)
                probes.append(
                    {"size": size, "channels_last": on, "bfloat16": bfloat16,
                     "seconds_per_image": seconds}
                )  # fmt: skip
                print(probes[-1], flush=True)
    fits = []
    for index in range(args.episodes):
        for on in (False, True):
            fits.append(fit(index, on, args.data_root))
            print(fits[-1], flush=True)
    env = environment("torch", "torch_threads", "OMP_NUM_THREADS", "machine", "cpu_capability")
    write_json(args.output, {"environment": env, "probes": probes, "fits": fits})


if __name__ == "__main__":
    main()
