"""Image decoding and preprocessing: any file Pillow reads -> a float tensor in model space.

A :class:`Preprocessing` is the contract between a backbone and the data: the square input size,
the number of channels (1 = grey, 3 = RGB) and the per-channel mean and std. Backbones carry one
(and checkpoints store it), datasets apply it. A backbone's is built, and resized or re-channelled
for a user's override, by :func:`anyshot.backbones.preprocessing.resolve_preprocessing` (each
architecture's default input and the ``[-1, 1]`` normalisation live there).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from anyshot.data.files import unread_advice, unread_format
from anyshot.errors import ImageReadError

__all__ = ["Preprocessing", "decode_image", "load_file", "open_image"]

# Decompression-bomb guard (Pillow's): a warning above 180 megapixels, and an image over twice
# that (360 MP) is refused (ImageReadError "too large") instead of exhausting memory.
Image.MAX_IMAGE_PIXELS = 180_000_000


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input tensor ``[C, H, W]``.

    Args:
        image_size: side of the square the image is resized to (bilinear, no crop).
        channels: 1 (grey) or 3 (RGB).
        mean: per-channel mean subtracted after scaling pixels to [0, 1]; length ``channels``.
        std: per-channel std divided by; length ``channels``.
    """

    image_size: int
    channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean and std need {self.channels} values each, got {self.mean} and {self.std}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be positive, got {self.std}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def with_size(self, image_size: int) -> Preprocessing:
        """The same preprocessing (channels, mean, std) at another input size.

        For a backbone's or checkpoint's preprocessing use
        :func:`anyshot.backbones.preprocessing.resolve_preprocessing` (the one override path).
        """
        return Preprocessing(image_size, self.channels, self.mean, self.std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Convert a decoded PIL image to a normalised tensor ``[C, H, W]`` (float32)."""
        mode = "L" if self.channels == 1 else "RGB"
        image = _to_mode(image, mode)
        if image.size != (self.image_size, self.image_size):
            image = image.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
        if array.ndim == 2:
            array = array[:, :, None]
        tensor = torch.from_numpy(array.transpose(2, 0, 1).copy())
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (tensor - mean) / std

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, for checkpoints and cache keys."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`."""
        return cls(
            image_size=int(data["image_size"]),
            channels=int(data["channels"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
        )


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow mode (1, L, P, RGBA, CMYK, I;16, F, LA, ...) to ``L`` or ``RGB``.

    Transparent pixels are composited on white, 16-bit and float images are rescaled to 8 bits.
    """
    if image.mode == mode:
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = Image.fromarray(((array - low) * scale).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert(mode)


#: Pillow names the in-memory buffer it decoded from; that says nothing to a user.
_BUFFER_REPR = re.compile(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def decode_image(data: bytes, name: str, size: int | None = None) -> Image.Image:
    """Decode image bytes (EXIF orientation applied).

    Args:
        data: the encoded file content.
        name: the file's name, used in error messages.
        size: the side the image will be resized to, when known (``None``: a full decode). A
            JPEG at least twice that size both ways is then decoded at the smallest of 1/2,
            1/4 and 1/8 scale that keeps both sides at or above it (libjpeg's DCT scaling,
            :meth:`PIL.Image.Image.draft`): several times faster on camera photos, pixels
            within about 1/255 of a full decode after the resize. Other formats, and smaller
            JPEGs, are decoded fully.

    Raises:
        ImageReadError: the bytes are not a readable image (corrupt, truncated, not an image).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            if size is not None:
                image.draft(image.mode, (size, size))  # JPEG only; a no-op elsewhere
            image.load()
            return ImageOps.exif_transpose(image) or image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = _BUFFER_REPR.sub("", str(error)).rstrip(". ")
        if "truncated" in reason:  # Pillow counts bytes left in a buffer, not those missing
            reason = "the file is cut short (truncated)"
        fmt = unread_format(data[:12])
        if fmt is not None:  # a phone photo renamed .jpg
            reason = unread_advice(fmt)
        raise ImageReadError(
            f"cannot read image {name!r}: {reason}. Remove or replace the file, "
            "or re-export it as PNG/JPEG."
        ) from error
    except Image.DecompressionBombError as error:
        raise ImageReadError(
            f"image {name!r} is too large to decode safely ({error}); downscale it first."
        ) from error


def open_image(path: str | os.PathLike[str], size: int | None = None) -> Image.Image:
    """Read and decode an image file (EXIF orientation applied; ``size``: see
    :func:`decode_image`).

    Raises:
        ImageReadError: the file is missing, unreadable, or not a decodable image.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise ImageReadError(f"cannot open image file {os.fspath(path)!r}: {error}") from error
    return decode_image(data, os.fspath(path), size)


def stack_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack ``[C, H, W]`` tensors into ``[B, C, H, W]``."""
    return torch.stack(list(images))


def load_file(path: str | os.PathLike[str], preprocessing: Preprocessing) -> torch.Tensor:
    """An image file decoded for ``preprocessing``'s size (see :func:`decode_image`) and
    preprocessed: ``[C, H, W]`` float32. The one way a user's files are read (``classify``'s
    :class:`~anyshot.embedding.ImageList`, ``evaluate``'s class folders), so that their cached
    features are the same rows."""
    return preprocessing(open_image(path, preprocessing.image_size))
