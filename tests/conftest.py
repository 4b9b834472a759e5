"""Shared test set-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anyshot.episodes import Episode


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: one torch thread avoids thread start-up and contention on a shared CPU.

    A test that needs the cores (real images) raises the count itself; it is restored after.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def private_cache_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test's default feature cache (``$XDG_CACHE_HOME/anyshot/features``) is a fresh
    temporary folder: no test reads or writes the real ``~/.cache``."""
    home = tmp_path_factory.mktemp("cache-home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200)]


def noisy_image(
    path: Path, colour: tuple[int, int, int], seed: int, *, size: int = 20, noise: float = 25.0
) -> Path:
    """A ``size`` px RGB PNG of ``colour`` plus seeded Gaussian noise, written to ``path``
    (parents created)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, noise, (size, size, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(path)
    return path


def support_and_query(
    root: Path, colours: dict[str, tuple[int, int, int]], per_class: int = 2
) -> tuple[Path, Path]:
    """``root/support/<name>/<i>.png`` and ``root/query/<name>-<i>.png``, ``per_class`` noisy
    20 px images of each colour in each (seeded, the query images unlike the support's)."""
    seed = 0
    for name, colour in colours.items():
        for i in range(per_class):
            seed += 1
            noisy_image(root / "support" / name / f"{i}.png", colour, seed)
            noisy_image(root / "query" / f"{name}-{i}.png", colour, seed + 100)
    return root / "support", root / "query"


def write_colour_folder(
    root: Path, *, classes: int = 5, per_class: int = 8, noise: float = 25.0
) -> Path:
    """A class-per-folder set of 12x12 RGB PNGs: one colour per class plus Gaussian noise."""
    for k, colour in enumerate(COLOURS[:classes]):
        for i in range(per_class):
            path = root / f"class{k}" / f"{i}.png"
            noisy_image(path, colour, 100 * k + i, size=12, noise=noise)
    return root


#: Width of :func:`clustered_episode`'s embeddings.
DIM = 32


def clustered_episode(
    query_counts: list[int], *, seed: int = 0, spread: float = 0.5, shift: float = 2.0
) -> Episode:
    """One-shot episode of embeddings ``[N, DIM, 1, 1]`` around random class centres.

    Every embedding shares a common ``shift`` direction (as pooled CNN features do), so
    raw cosines between classes are high and centring has something to remove.
    """
    g = torch.Generator().manual_seed(seed)
    ways = len(query_counts)
    centres = torch.randn(ways, DIM, generator=g)
    common = shift * torch.randn(DIM, generator=g).abs()

    def draw(k: int, n: int) -> torch.Tensor:
        return centres[k] + common + spread * torch.randn(n, DIM, generator=g)

    support = torch.cat([draw(k, 1) for k in range(ways)])
    query = torch.cat([draw(k, n) for k, n in enumerate(query_counts)])
    labels = list(range(ways))
    query_labels = [k for k, n in enumerate(query_counts) for _ in range(n)]
    return Episode(support[:, :, None, None], labels, query[:, :, None, None], query_labels)
