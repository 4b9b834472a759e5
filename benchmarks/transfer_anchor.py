"""The practitioner's second anchor for issue 16: full fine-tuning with a standard transfer recipe.

What a practitioner does with an ImageNet network and a labelled folder, outside any few-shot
library: replace the classifier with a new linear layer, train every parameter with
cross-entropy on the labelled images under random-resized-crop (and horizontal-flip)
augmentation, SGD with Nesterov momentum and a cosine learning-rate schedule, then classify the
held-out images in eval mode. Not in the product: the product's network scopes are
:class:`~anyshot.methods.FineTuning` with ``scope="last"`` / ``"all"``.

Recipe (one set of settings for every task; nothing tuned per cell): batch 64 (the whole support
when smaller), SGD lr 0.01, momentum 0.9, Nesterov, weight decay 1e-4 on the weights (not on
biases or batch-norm), cosine decay to 0 over ``max(epochs * batches per epoch, min_steps)``
steps (15 epochs, at least 100 steps, so that a 10-image support gets as many updates as a
practitioner's short run would), crops of 35-100% of the area with aspect 3/4-4/3 resized back
to the input size, batch-norm momentum 0.1 (PyTorch's default; EfficientNet-Lite0's own 0.01
leaves the eval-mode statistics mostly ImageNet's after a short run: on a 10-way 5-shot val
episode of digits the anchor then scored 14%, near chance), bfloat16 autocast on CUDA. The
caller's backbone is never changed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from anyshot.methods.frozen import evaluation_mode
from anyshot.pretrain import parameter_groups

__all__ = ["TransferRecipe", "full_finetune", "random_resized_crop"]


@dataclass(frozen=True)
class TransferRecipe:
    """The settings of :func:`full_finetune` (see the module docstring)."""

    epochs: int = 15
    min_steps: int = 100
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    min_area: float = 0.35
    flip: bool = True
    norm_momentum: float = 0.1


def random_resized_crop(
    images: torch.Tensor, generator: torch.Generator, min_area: float, flip: bool
) -> torch.Tensor:
    """Random-resized crops of ``images`` ``[B, C, H, W]`` back to ``[B, C, H, W]`` (bilinear,
    one affine grid per image: area fraction in ``[min_area, 1]``, aspect ratio in
    ``[3/4, 4/3]``, a random position inside the image; mirrored with probability 0.5 when
    ``flip``)."""
    batch = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator)

    area = uniform(min_area, 1.0)
    log_ratio = uniform(math.log(3 / 4), math.log(4 / 3))
    width = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)
    height = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
    centre_x = (1 - width) * uniform(-1.0, 1.0)
    centre_y = (1 - height) * uniform(-1.0, 1.0)
    mirror = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)
    scale_x = width * (mirror if flip else 1.0)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = scale_x, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def _optimizer(model: nn.Module, recipe: TransferRecipe) -> torch.optim.Optimizer:
    """SGD with weight decay on convolution and linear weights only (pre-training's groups)."""
    groups = parameter_groups(model, recipe.weight_decay)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=True)


def full_finetune(
    backbone: nn.Module,
    support: torch.Tensor,
    targets: torch.Tensor,
    query: torch.Tensor,
    ways: int,
    *,
    recipe: TransferRecipe = TransferRecipe(),
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Fine-tune a copy of ``backbone`` (features ``[B, D]``) plus a new linear classifier.

    Args:
        backbone: the ImageNet network, mapping ``[B, C, H, W]`` to features ``[B, D]``.
        support: labelled images ``[S, C, H, W]``, already preprocessed.
        targets: ``[S]`` class indices in ``0..ways-1``.
        query: images to classify ``[Q, C, H, W]``.
        ways: number of classes.
        recipe: the training settings.
        seed: seeds the classifier's initialisation, batch order and augmentation.
        device: where to train.

    Returns:
        Query logits ``[Q, ways]`` (float32, on the CPU).
    """
    if len(support) < 2:
        raise ValueError("full fine-tuning needs at least two labelled images (batch-norm)")
    device = torch.device(device)
    support, labels = support.to(device), targets.to(device)
    generator = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(backbone).to(device).train()
    for param in model.parameters():
        param.requires_grad_(True)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = recipe.norm_momentum
    with torch.no_grad(), evaluation_mode(model):  # the feature size, no statistics moved
        dim = model(support[:1]).shape[-1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(dim, ways).to(device)
    network = nn.Sequential(model, head)
    optimizer = _optimizer(network, recipe)
    batch = min(recipe.batch_size, len(support))
    per_epoch = math.ceil(len(support) / batch)
    steps = max(recipe.epochs * per_epoch, recipe.min_steps)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    step = 0
    while step < steps:
        order = torch.randperm(len(support), generator=generator)
        for part in order.split(batch):
            if step == steps or len(part) < 2:  # batch-norm needs two images
                break
            part = part.to(device)
            images = random_resized_crop(support[part], generator, recipe.min_area, recipe.flip)
            with autocast:
                loss = F.cross_entropy(network(images), labels[part])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
    network.eval()
    with torch.inference_mode(), autocast:
        logits = [network(chunk.to(device)).float().cpu() for chunk in query.split(256)]
    return torch.cat(logits)
