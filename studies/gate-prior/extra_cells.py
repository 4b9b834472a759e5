"""``benchmarks/realistic_grid.py`` with extra cells where the gate closes on queries that cover
the classes: 5-way balanced and Dirichlet queries at 10 and 20 shots (the gate asks 6 + shots / 2
queries per predicted class: 11 at 10 shots, 16 at 20). Same arguments as that script; the
extra cells' names end in ``-x`` and are selected with ``--cells`` as any other.

    PYTHONPATH=src:benchmarks python studies/gate-prior/extra_cells.py --split val --cells=-x \\
        --methods support-init,recommended:gate_prior_share=0.0,recommended --output OUT.json
"""

from __future__ import annotations

from typing import Any

import realistic_grid
from realistic_grid import Cell

_grid = realistic_grid.grid


def extra_cells(episodes: int | None) -> list[Cell]:
    """5-way cells at 10 / 20 shots (mini-ImageNet; Omniglot has 20 images per class: 10 shots
    and 10 queries per class there)."""
    count = 200 if episodes is None else episodes
    cells = []
    for shots in (10, 20):
        cells.append(Cell(f"mini-balanced-5w{shots}s-x", "mini", "balanced", 5, shots, count,
                          queries_per_class=15))
        for alpha in (0.5, 2.0):
            cells.append(Cell(f"mini-dirichlet{alpha:g}-5w{shots}s-x", "mini", "dirichlet", 5,
                              shots, count, total_queries=75, alpha=alpha))
    cells.append(Cell("omni-balanced-5w10s-x", "omni", "balanced", 5, 10, count, queries_per_class=10))
    for alpha in (0.5, 2.0):
        cells.append(Cell(f"omni-dirichlet{alpha:g}-5w10s-x", "omni", "dirichlet", 5, 10, count,
                          total_queries=25, alpha=alpha))
    return cells


def grid(all_ways: dict[str, int], episodes: int | None) -> list[Cell]:
    return _grid(all_ways, episodes) + extra_cells(episodes)


def main() -> Any:
    realistic_grid.grid = grid
    return realistic_grid.main()


if __name__ == "__main__":
    main()
