"""Tests of anyshot.sharding and ``anyshot evaluate --workers``: sharded runs give the records of
a single process (only seconds differ), under spawned workers and under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest

from anyshot.cli import main
from anyshot.errors import ConfigurationError
from anyshot.sharding import Shard, launch, torchrun_world
from conftest import write_colour_folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_colour_folder(tmp_path / "data", classes=4, per_class=6, noise=60.0)


def argv(root: Path, output: Path, *extra: str) -> list[str]:
    return [
        "evaluate", "--dataset", "folder", "--data-root", str(root), "--ways", "3",
        "--shots", "1", "--queries", "3", "--episodes", "7", "--backbone", "conv4",
        "--image-size", "16", "--seed", "4", "--quiet", "--output", str(output), *extra,
    ]  # fmt: skip


def without_seconds(path: Path) -> list[dict[str, Any]]:
    records = json.loads(path.read_text())["episodes"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_shard_split_and_single_process_gather() -> None:
    assert Shard(1, 3).indices(8) == [1, 4, 7]
    assert Shard(2, 3).indices(2) == []
    parts = [Shard(r, 3).indices(10) for r in range(3)]
    assert sorted(i for p in parts for i in p) == list(range(10))
    assert Shard().all_gather({"a": 1}) == [{"a": 1}] and Shard().is_main


TRANSDUCTIVE = ["--method", "transductive", "--temperature", "0.1", "--lr", "0.01", "--epochs", "6"]


def test_two_workers_give_the_single_process_records(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Cached and batched (transductive head), 70 episodes over 2 workers: whole batches of
    # 64 episodes each, so worker 0 runs episodes 0-63 and worker 1 runs 64-69.
    cache = str(tmp_path / "cache")
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    many = ["--episodes", "70", "--cache-dir", cache]
    assert main(argv(folder, one, *TRANSDUCTIVE, *many)) == 0
    assert main(argv(folder, two, *TRANSDUCTIVE, *many, "--workers", "2")) == 0
    records = without_seconds(two)
    assert [r["index"] for r in records] == list(range(70))
    assert records == without_seconds(one)  # accuracies and entropies exactly equal
    assert len({r["accuracy"] for r in records} | {r["entropy"] for r in records}) > 2
    assert json.loads(two.read_text())["config"]["workers"] == 2
    assert "workers" not in json.loads(one.read_text())["config"]


def test_two_workers_uncached_match_and_only_rank0_prints(
    folder: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    method = ["--method", "support-init"]
    assert main(argv(folder, one, *method)) == 0
    capfd.readouterr()
    loud = [a for a in argv(folder, two, *method, "--workers", "2") if a != "--quiet"]
    assert main(loud) == 0
    out, err = capfd.readouterr()
    assert out.count("results written to") == 1 and out.count("accuracy") == 1
    assert "episodes (process 1 of 2: its share)" in err  # the bar counts one process's share
    assert without_seconds(two) == without_seconds(one)


def test_workers_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--dataset", "folder", "--data-root", ".", "--output", "x",
              "--workers", "0"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "--workers: must be a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(ConfigurationError, match="at least 1"):
        launch(_status_job, Namespace(), workers=0)


def _status_job(args: Any, shard: Shard) -> int:
    return 0


def _failing_job(args: Any, shard: Shard) -> int:
    values = shard.all_gather(shard.rank * 10)
    if shard.rank == 1:
        raise ConfigurationError(f"rank 1 saw {values}")
    shard.barrier()  # rank 0 waits here until rank 1's failure stops it
    return 0


def test_a_failing_worker_raises_its_error_here() -> None:
    with pytest.raises(ConfigurationError, match=r"rank 1 saw \[0, 10\]"):
        launch(_failing_job, None, workers=2, threads=1)


def test_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert torchrun_world() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert torchrun_world() == (1, 2)
    with pytest.raises(ConfigurationError, match="contradicts torchrun"):
        launch(_status_job, None, workers=3)


def test_torchrun_gives_the_single_process_records(folder: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    cache = str(tmp_path / "cache")
    assert main(argv(folder, one, "--method", "support-init", "--cache-dir", cache)) == 0
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--standalone", "-m", "anyshot",
        *argv(folder, two, "--method", "support-init", "--cache-dir", cache),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("results written to") == 1
    assert without_seconds(two) == without_seconds(one)
    assert json.loads(two.read_text())["config"]["workers"] == 2
