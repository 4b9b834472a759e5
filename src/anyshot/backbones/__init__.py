"""Backbones: conv-4, ResNet-12, WRN-28-10, EfficientNet-Lite0; a registry; checkpoints.

Modules: :mod:`~anyshot.backbones.preprocessing` (each architecture's input and the one
preprocessing resolver), :mod:`~anyshot.backbones.base` (the contract), one module per network,
:mod:`~anyshot.backbones.architectures` (name -> constructor), :mod:`~anyshot.backbones.checkpoint`
(files) and :mod:`~anyshot.backbones.registry` (:func:`load_backbone`: a name or a file).
"""

from anyshot.backbones.architectures import available_backbones, build_backbone
from anyshot.backbones.base import EMBEDDINGS, Backbone
from anyshot.backbones.checkpoint import (
    load_checkpoint,
    load_checkpoint_with_metadata,
    save_backbone,
)
from anyshot.backbones.conv4 import Conv4
from anyshot.backbones.efficientnet_lite import (
    EfficientNetLite0,
    imagenet_class_names,
    imagenet_wnids,
)
from anyshot.backbones.preprocessing import INPUT_SPECS, InputSpec, resolve_preprocessing
from anyshot.backbones.registry import load_backbone
from anyshot.backbones.resnet12 import ResNet12
from anyshot.backbones.wrn import WideResNet

__all__ = [
    "EMBEDDINGS",
    "INPUT_SPECS",
    "Backbone",
    "Conv4",
    "EfficientNetLite0",
    "InputSpec",
    "ResNet12",
    "WideResNet",
    "available_backbones",
    "build_backbone",
    "imagenet_class_names",
    "imagenet_wnids",
    "load_backbone",
    "load_checkpoint",
    "load_checkpoint_with_metadata",
    "resolve_preprocessing",
    "save_backbone",
]
