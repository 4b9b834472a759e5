"""The head loop's Adam (anyshot.methods.adam) is torch.optim.Adam's update."""

from __future__ import annotations

import torch

from anyshot.methods.adam import Adam


def test_adam_matches_torch_optim_adam_step_by_step() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(4, 6, generator=g)
    start = [torch.randn(4, 6, generator=g), torch.randn(4, generator=g)]
    mine = [t.clone().requires_grad_(True) for t in start]
    theirs = [t.clone().requires_grad_(True) for t in start]
    ours, reference = Adam(mine, lr=0.05), torch.optim.Adam(theirs, lr=0.05)

    def loss(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return ((weight - target) ** 2).sum() + (bias**3).abs().sum()

    for step in range(40):
        for optimizer, params in ((ours, mine), (reference, theirs)):
            optimizer.zero_grad()
            # the bias gets no gradient every third step: its step count must not advance
            (loss(*params) if step % 3 else ((params[0] - target) ** 2).sum()).backward()
            optimizer.step()
        for a, b in zip(mine, theirs, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert not torch.equal(mine[0], start[0])
