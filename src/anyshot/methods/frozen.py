"""Running a caller's backbone without changing it: frozen (eval-mode, no-grad) forward passes.

The caller's module keeps its parameters, buffers, ``training`` flags and device. When the
requested device differs from the module's, a copy is moved there instead.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import torch
from torch import nn

from anyshot.episodes import Images, image_batches

__all__ = ["evaluation_mode", "frozen_forward", "module_device", "resolve_device", "working_copy"]


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for a parameterless module)."""
    for param in module.parameters():
        return param.device
    return torch.device("cpu")


def resolve_device(module: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` if given, else the module's own device (never a hard-coded ``cuda``)."""
    return torch.device(device) if device is not None else module_device(module)


@contextlib.contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode for the block, then restore each ``training`` flag."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for submodule, flag in flags:
            submodule.training = flag


def working_copy(module: nn.Module, device: torch.device) -> nn.Module:
    """A deep copy of ``module`` on ``device``, with every parameter trainable.

    The copy is what fine-tuning trains; the caller's module is left exactly as it was.
    """
    clone = copy.deepcopy(module).to(device)
    for param in clone.parameters():
        param.requires_grad_(True)
        param.grad = None
    return clone


def frozen_forward(
    module: nn.Module,
    images: Images,
    *,
    batch_size: int,
    device: str | torch.device | None = None,
    function: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Apply ``function(module, batch)`` (default ``module(batch)``) in eval mode, no grad.

    Args:
        module: any module; it is not modified.
        images: ``[N, C, H, W]`` tensor or lazy image sequence.
        batch_size: images per forward pass (bounds memory).
        device: where to compute; default the module's device.

    Returns:
        ``[N, ...]`` outputs on the CPU (float32).
    """
    target = resolve_device(module, device)
    model = module if module_device(module) == target else copy.deepcopy(module).to(target)
    call = function if function is not None else (lambda m, x: m(x))
    outputs: list[torch.Tensor] = []
    with evaluation_mode(model), torch.inference_mode():
        for batch in image_batches(images, batch_size):
            outputs.append(call(model, batch.to(target)).float().cpu())
    if not outputs:
        raise ValueError("frozen_forward needs at least one image")
    return torch.cat(outputs)
