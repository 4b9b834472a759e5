"""The one place that decides how images are prepared for a backbone.

* :data:`INPUT_SPECS`: each registered architecture's default input (square side, channels);
* :data:`DATASET_INPUTS`: data sets whose networks are conventionally trained at another input
  (Omniglot: 28 px grey characters);
* :data:`UNIT_RANGE`: the normalisation of every anyshot backbone, pixels ``[0, 1] -> [-1, 1]``
  (mean 0.5 and std 0.5 per channel);
* :func:`resolve_preprocessing`: the single function that turns an architecture name, or a
  backbone's / checkpoint's stored preprocessing, plus optional overrides into a
  :class:`~anyshot.data.images.Preprocessing`. Backbone constructors, checkpoint loading, the
  classifier's ``image_size`` and pre-training all go through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias

from anyshot.data.images import Preprocessing

__all__ = [
    "DATASET_INPUTS",
    "INPUT_SPECS",
    "UNIT_RANGE",
    "InputSpec",
    "Normalisation",
    "PreprocessingSource",
    "resolve_preprocessing",
]


@dataclass(frozen=True)
class InputSpec:
    """A network's input: ``[B, channels, image_size, image_size]`` tensors.

    Attributes:
        image_size: side in pixels of the square the images are resized to.
        channels: 1 (grey) or 3 (RGB).
    """

    image_size: int
    channels: int = 3


@dataclass(frozen=True)
class Normalisation:
    """Per-channel affine normalisation ``(pixel / 255 - mean) / std``, equal for every channel.

    Attributes:
        mean: subtracted from pixels scaled to ``[0, 1]``.
        std: divided by after the subtraction.
    """

    mean: float
    std: float

    def mean_for(self, channels: int) -> tuple[float, ...]:
        """``mean`` repeated ``channels`` times (what :class:`Preprocessing` stores)."""
        return (self.mean,) * channels

    def std_for(self, channels: int) -> tuple[float, ...]:
        """``std`` repeated ``channels`` times."""
        return (self.std,) * channels


#: Pixels in ``[0, 1]`` mapped to ``[-1, 1]``: the normalisation of every anyshot backbone
#: (and of the EfficientNet-Lite ImageNet weights).
UNIT_RANGE = Normalisation(mean=0.5, std=0.5)

#: Default input of each registered architecture (keys: the registry names).
INPUT_SPECS: Mapping[str, InputSpec] = MappingProxyType(
    {
        "conv4": InputSpec(image_size=84, channels=3),
        "resnet12": InputSpec(image_size=84, channels=3),
        "wrn28-10": InputSpec(image_size=84, channels=3),
        "efficientnet-lite0": InputSpec(image_size=224, channels=3),
    }
)

#: Input a network trained on one of these data sets gets by default (replaces the
#: architecture's): the few-shot literature trains on Omniglot at 28 px, grey.
DATASET_INPUTS: Mapping[str, InputSpec] = MappingProxyType(
    {"omniglot": InputSpec(image_size=28, channels=1)}
)

#: What :func:`resolve_preprocessing` starts from: a registry name, a :class:`Preprocessing`, or
#: its :meth:`~Preprocessing.to_dict` form (as stored in checkpoints).
PreprocessingSource: TypeAlias = str | Preprocessing | Mapping[str, Any]


def resolve_preprocessing(
    source: PreprocessingSource,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    dataset: str | None = None,
) -> Preprocessing:
    """The preprocessing of a backbone: stored or default, then the user's overrides.

    Args:
        source: an architecture name (a key of :data:`INPUT_SPECS`: its default input with the
            :data:`UNIT_RANGE` normalisation), or the preprocessing a backbone or checkpoint
            carries (a :class:`Preprocessing` or its ``to_dict()`` form), kept as it is.
        image_size: input side in pixels replacing the source's; ``None`` keeps it.
        channels: 1 or 3, replacing the source's; ``None`` keeps it. A stored preprocessing can
            change channels only when its mean and std are the same for every channel.
        dataset: with an architecture name only: a data set the network is trained on; one of
            :data:`DATASET_INPUTS` replaces the architecture's default input (overrides still
            win); other names change nothing.

    Returns:
        The preprocessing (square side, channels, per-channel mean and std). Changing the size
        never changes the normalisation.

    Raises:
        ValueError: an unknown architecture name; ``dataset`` with a stored preprocessing; a
            channel change of a stored preprocessing whose channels are normalised differently;
            an invalid size or channel count.
    """
    if isinstance(source, str):
        return _from_architecture(source, image_size, channels, dataset)
    if dataset is not None:
        raise ValueError(
            "dataset= chooses the default input of an architecture; a stored preprocessing "
            "keeps its own (pass image_size= / channels= to change it)"
        )
    stored = source if isinstance(source, Preprocessing) else Preprocessing.from_dict(dict(source))
    return _with_overrides(stored, image_size, channels)


def _from_architecture(
    arch: str, image_size: int | None, channels: int | None, dataset: str | None
) -> Preprocessing:
    """Default input of ``arch`` (or of ``dataset``), overridden, normalised to ``[-1, 1]``."""
    try:
        spec = INPUT_SPECS[arch]
    except KeyError:
        raise ValueError(
            f"unknown backbone {arch!r}; known backbones: {', '.join(INPUT_SPECS)}"
        ) from None
    spec = DATASET_INPUTS.get(dataset or "", spec)
    size = spec.image_size if image_size is None else int(image_size)
    depth = spec.channels if channels is None else int(channels)
    return Preprocessing(size, depth, UNIT_RANGE.mean_for(depth), UNIT_RANGE.std_for(depth))


def _with_overrides(
    stored: Preprocessing, image_size: int | None, channels: int | None
) -> Preprocessing:
    """``stored`` at another size and/or channel count, with its own normalisation."""
    size = stored.image_size if image_size is None else int(image_size)
    depth = stored.channels if channels is None else int(channels)
    mean, std = stored.mean, stored.std
    if depth != stored.channels:
        if len(set(mean)) != 1 or len(set(std)) != 1:
            raise ValueError(
                f"cannot change the preprocessing from {stored.channels} to {depth} channel(s): "
                f"its channels are normalised differently (mean {mean}, std {std})"
            )
        mean, std = (mean[0],) * depth, (std[0],) * depth
    return Preprocessing(size, depth, mean, std)
