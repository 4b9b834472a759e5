"""Pre-training: schedule, parameter groups, losses, resume, errors, checkpoints, CLI and DDP."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from anyshot.backbones import build_backbone, load_backbone
from anyshot.backbones.checkpoint import load_checkpoint_with_metadata
from anyshot.cli import build_parser, main
from anyshot.cli.pretrain import config_from_args
from anyshot.data.images import Preprocessing
from anyshot.data.memory import MemoryImages
from anyshot.errors import CheckpointError, ConfigurationError
from anyshot.pretrain import (
    PretrainConfig,
    last_path,
    lr_at,
    mix_batch,
    mixup_cross_entropy,
    parameter_groups,
    parse_cycles,
    pretrain,
    scaled_cycles,
)

SIZE = 16
GREY = Preprocessing(SIZE, 1, (0.5,), (0.5,))


def synthetic(classes: int, per_class: int, seed: int) -> MemoryImages:
    """Random 16 px grey images whose class shifts the brightness (so there is signal)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    noise = torch.randint(0, 96, (classes * per_class, 1, SIZE, SIZE), generator=generator)
    pixels = (noise + labels.view(-1, 1, 1, 1) * 30).clamp(0, 255).to(torch.uint8)
    return MemoryImages(pixels, labels, [f"class{k}" for k in range(classes)], GREY)


def tiny_config(output: Path, **changes: Any) -> PretrainConfig:
    settings: dict[str, Any] = {
        "output": str(output),
        "dataset": "folder",
        "image_size": SIZE,
        "channels": 1,
        "cycles": ((1, 0.1), (1, 0.01)),
        "batch_size": 16,
        "flip": False,
        "val_episodes": 4,
        "val_queries": 3,
        "device": "cpu",
    }
    settings.update(changes)
    return PretrainConfig(**settings)


@pytest.fixture(scope="module")
def data() -> tuple[MemoryImages, MemoryImages]:
    return synthetic(6, 8, seed=1), synthetic(6, 4, seed=2)


# --- pieces ------------------------------------------------------------------------------------
def test_cosine_schedule_restarts_per_iteration() -> None:
    cycles = ((2, 0.1), (4, 0.01))
    assert lr_at(0, 10, cycles) == pytest.approx(0.1)
    assert lr_at(10, 10, cycles) == pytest.approx(0.05)  # half-way through cycle 1
    assert lr_at(19, 10, cycles) == pytest.approx(0.05 * (1 + math.cos(math.pi * 19 / 20)))
    assert lr_at(20, 10, cycles) == pytest.approx(0.01)  # warm restart
    assert lr_at(40, 10, cycles) == pytest.approx(0.005)
    assert lr_at(60, 10, cycles) == 0.0
    assert parse_cycles("40:0.1, 80:0.01") == ((40, 0.1), (80, 0.01))
    assert scaled_cycles(15) == ((5, 0.1), (10, 0.01))
    assert scaled_cycles(1) == ((1, 0.1),)
    with pytest.raises(ConfigurationError, match="EPOCHS:LR"):
        parse_cycles("40-0.1")


def test_no_weight_decay_on_batch_norm_or_biases() -> None:
    model = build_backbone("conv4", image_size=SIZE, channels=1, num_classes=6)
    decay, no_decay = parameter_groups(model, 1e-4)
    assert (decay["name"], decay["weight_decay"]) == ("decay", 1e-4)
    assert (no_decay["name"], no_decay["weight_decay"]) == ("no_decay", 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    free = {names[id(p)] for p in no_decay["params"]}
    assert decayed == {n for n, p in model.named_parameters() if p.dim() > 1}
    assert all(".1." in n or n.endswith("bias") for n in free)  # conv_block index 1 is the BN
    assert "classifier.bias" in free and "classifier.weight" in decayed
    assert len(decayed) + len(free) == len(list(model.parameters()))


def test_label_smoothing_loss_matches_hand_computation() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    log_p = [v - math.log(math.exp(2) + 1 + math.exp(-1)) for v in (2.0, 0.0, -1.0)]
    s, k = 0.1, 3
    expected = -((1 - s + s / k) * log_p[0] + (s / k) * log_p[1] + (s / k) * log_p[2])
    got = mixup_cross_entropy(logits, torch.tensor([0]), torch.tensor([0]), 1.0, s)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_mixup_loss_and_images_match_hand_computation() -> None:
    logits = torch.tensor([[1.0, 2.0], [0.5, -0.5]])
    y, y2, lam, s = torch.tensor([0, 1]), torch.tensor([1, 1]), 0.3, 0.1

    def smoothed(row: list[float], target: int) -> float:
        norm = math.log(sum(math.exp(v) for v in row))
        q = [s / 2 + (1 - s) * (j == target) for j in range(2)]
        return -sum(qj * (v - norm) for qj, v in zip(q, row, strict=True))

    rows = logits.tolist()
    expected = sum(
        lam * smoothed(r, int(a)) + (1 - lam) * smoothed(r, int(b))
        for r, a, b in zip(rows, y, y2, strict=True)
    ) / len(rows)
    assert float(mixup_cross_entropy(logits, y, y2, lam, s)) == pytest.approx(expected, rel=1e-6)
    images = torch.tensor([1.0, 10.0]).view(2, 1, 1, 1)
    mixed = mix_batch(images, 0.25, torch.tensor([1, 0]))
    assert mixed.flatten().tolist() == pytest.approx([0.25 + 7.5, 2.5 + 0.75])


# --- runs --------------------------------------------------------------------------------------
class Stop(Exception):
    """Stands in for a crash after an epoch."""


def test_resume_reaches_the_same_weights(
    tmp_path: Path, data: tuple[MemoryImages, MemoryImages]
) -> None:
    train, val = data
    straight = pretrain(tiny_config(tmp_path / "a.pt"), train=train, val=val)

    def crash(record: dict[str, Any]) -> None:
        raise Stop

    config = tiny_config(tmp_path / "b.pt")
    with pytest.raises(Stop):
        pretrain(config, train=train, val=val, on_epoch=crash)
    resumed = pretrain(config, train=train, val=val, resume=True)

    for path_a, path_b in (
        (straight.last_path, resumed.last_path),
        (straight.best_path, resumed.best_path),
    ):
        a, b = load_backbone(path_a).state_dict(), load_backbone(path_b).state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in straight.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]
    assert len(resumed.history) == 2 and resumed.best_epoch == straight.best_epoch


def test_saved_checkpoint_loads_with_load_backbone(
    tmp_path: Path, data: tuple[MemoryImages, MemoryImages]
) -> None:
    train, val = data
    result = pretrain(tiny_config(tmp_path / "c.pt", cycles=((1, 0.1),)), train=train, val=val)
    backbone, metadata = load_checkpoint_with_metadata(result.best_path)
    assert backbone.arch == "conv4" and backbone.embedding == "logits"
    assert backbone.class_names == list(train.class_names)
    assert backbone.preprocessing == GREY
    assert metadata["extra"]["pretrain"]["epoch"] == 1
    assert backbone.eval()(val.batch([0, 1])).shape == (2, 6)
    state = load_checkpoint_with_metadata(last_path(result.best_path))[1]["extra"]
    assert state["training_state"]["epoch"] == 1 and "optimizer" in state["training_state"]


def test_refusals_and_corrupt_state(
    tmp_path: Path, data: tuple[MemoryImages, MemoryImages]
) -> None:
    train = data[0]
    config = tiny_config(tmp_path / "d.pt", cycles=((1, 0.1),), val_split=None)
    with pytest.raises(CheckpointError, match="no training state"):
        pretrain(config, train=train, resume=True)
    pretrain(config, train=train)
    with pytest.raises(ConfigurationError, match="--resume"):
        pretrain(config, train=train)  # never silently overwrites a run
    other = tiny_config(
        tmp_path / "d.pt", cycles=((1, 0.1),), val_split=None, batch_size=8, arch="resnet12"
    )
    with pytest.raises(CheckpointError) as error:
        pretrain(other, train=train, resume=True)
    assert "batch_size: saved 16, now 8" in str(error.value)
    assert "arch: saved 'conv4', now 'resnet12'" in str(error.value)
    state = last_path(config.output)
    state.write_bytes(state.read_bytes()[:100])  # truncated by a crash mid-copy
    with pytest.raises(CheckpointError, match="corrupt"):
        pretrain(config, train=train, resume=True)
    torch.save({"state_dict": {}}, state)
    with pytest.raises(CheckpointError, match="training state"):
        pretrain(config, train=train, resume=True)


def test_cli_pretrain_on_a_folder(tmp_path: Path) -> None:
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for k in range(4):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(5):
            pixels = (rng.integers(0, 80, (SIZE, SIZE)) + 40 * k).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(root / f"c{k}" / f"{i}.png")
    out = tmp_path / "ckpt" / "folder.pt"
    argv = [
        "pretrain",
        "--dataset",
        "folder",
        "--data-root",
        str(root),
        "--image-size",
        str(SIZE),
        "--channels",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--quiet",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    assert load_backbone(out).class_names == ["c0", "c1", "c2", "c3"]
    assert main(argv) == 2  # the state exists: refuses without --resume
    assert main([*argv, "--resume"]) == 0  # already complete: nothing to do
    args = build_parser().parse_args(
        ["pretrain", "--dataset", "omniglot", "--data-root", "x", "--output", "o.pt"]
    )
    config = config_from_args(args)
    assert (config.image_size, config.channels, config.flip) == (28, 1, False)
    assert config.cycles == ((40, 0.1), (80, 0.01)) and config.val_split == "val"


# --- distributed -------------------------------------------------------------------------------
DDP_SCRIPT = '''
"""Pre-train on synthetic data; run by torchrun (2 ranks) and in-process (1 rank)."""
import json, sys
import torch
from torch import nn
from anyshot.backbones.base import Backbone
from anyshot.data.images import Preprocessing
from anyshot.data.memory import MemoryImages
from anyshot.pretrain import PretrainConfig, pretrain

GREY = Preprocessing(16, 1, (0.5,), (0.5,))


class NoNorm(Backbone):
    """A batch-norm-free network: with it DDP must match one process up to float rounding."""

    arch = "no-norm"

    def __init__(self, classes: int) -> None:
        super().__init__(GREY, embedding="logits")
        self.trunk = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(4))
        self.feature_dim = 8 * 4 * 4
        self.classifier = nn.Linear(self.feature_dim, classes)

    def forward_trunk(self, images):
        return self.trunk(images)

    def forward_features(self, activations):
        return torch.flatten(activations, 1)

    def last_stage_modules(self):
        return []

    def config(self):
        return {}


def data():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(6).repeat_interleave(8)
    noise = torch.randint(0, 96, (48, 1, 16, 16), generator=generator)
    pixels = (noise + labels.view(-1, 1, 1, 1) * 30).clamp(0, 255).to(torch.uint8)
    return MemoryImages(pixels, labels, [f"c{k}" for k in range(6)], GREY)


def run(folder):
    train = data()
    curves = {}
    for name in ("no-norm", "conv4"):
        config = PretrainConfig(
            output=f"{folder}/{name}.pt", image_size=16, channels=1, batch_size=16,
            cycles=((2, 0.1), (1, 0.01)), flip=True, val_split=None, device="cpu",
        )
        torch.manual_seed(0)
        model = NoNorm(6) if name == "no-norm" else None
        result = pretrain(config, train=train, backbone=model)
        curves[name] = [r["loss"] for r in result.history]
        if model is not None:
            curves["weights"] = [p.detach().flatten().tolist() for p in model.parameters()]
    return curves


if __name__ == "__main__":
    # One process group for both runs (pretrain() uses a group its caller started; re-creating
    # a group on the same torchrun store within one process is not reliable).
    torch.distributed.init_process_group("gloo")
    curves = run(sys.argv[1])
    torch.distributed.destroy_process_group()
    if curves["no-norm"]:  # rank 0 only
        with open(f"{sys.argv[1]}/curves.json", "w") as handle:
            json.dump(curves, handle)
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_process_ddp_matches_one_process(tmp_path: Path) -> None:
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    (tmp_path / "ddp").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        str(script),
        str(tmp_path / "ddp"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "ddp" / "curves.json").read_text())

    spec = importlib.util.spec_from_file_location("ddp_run", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "one").mkdir()
    one = module.run(str(tmp_path / "one"))

    # Without batch-norm the two runs compute the same global-batch gradient (same order,
    # augmentation and mixup on every rank, each rank its shard, DDP averages): equal up to float
    # summation order.
    np.testing.assert_allclose(two["no-norm"], one["no-norm"], rtol=1e-4)
    for a, b in zip(two["weights"], one["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # conv-4 normalises each rank's 8 images by their own batch statistics, not the 16 of the
    # single process: the curves differ by that noise only, a few per cent at most here.
    np.testing.assert_allclose(two["conv4"], one["conv4"], rtol=0.1)
