"""Streaming images through a network: decode a batch, embed it, keep only the embeddings.

Images reach a network as one of

* a float tensor ``[N, C, H, W]`` already in model space (sliced into batches), or
* an :class:`ImageList`: file paths, PIL images or ``[C, H, W]`` tensors, decoded and preprocessed
  only when a batch needs them.

:func:`embed_images` runs a frozen network over them ``batch_size`` images at a time, so memory is
bounded by one batch of pixels plus the ``[N, D]`` embeddings, whatever ``N`` is. An unreadable
image either raises :class:`~anyshot.errors.ImageReadError` (the default) or, when an
``on_unreadable`` callback is given, is left out and reported to it as an :class:`Unreadable`.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, overload

import torch
from PIL import Image
from torch import nn

from anyshot.data.images import Preprocessing, open_image
from anyshot.errors import EpisodeError, ImageReadError
from anyshot.methods.frozen import evaluation_mode, module_device, resolve_device
from anyshot.progress import progress_bar

__all__ = [
    "ImageItem",
    "ImageList",
    "OnUnreadable",
    "Unreadable",
    "as_images",
    "check_images",
    "embed_images",
    "select_images",
]

#: One image: a file path, a decoded PIL image, or a preprocessed ``[C, H, W]`` float tensor.
ImageItem = str | os.PathLike[str] | Image.Image | torch.Tensor


@dataclass(frozen=True)
class Unreadable:
    """An image that could not be used.

    Attributes:
        index: its position in the images given.
        source: the file path (or ``"image #i"`` for an in-memory image).
        reason: why, in words (the decoder's message).
        kind: ``"too-large"`` (over the decompression-bomb limit), ``"permission"`` (the file
            cannot be opened for reading) or ``"corrupt"`` (anything else: corrupt, truncated,
            not really an image).
    """

    index: int
    source: str
    reason: str
    kind: str = "corrupt"


OnUnreadable = Callable[[Unreadable], None]
#: Pillow names the in-memory buffer it decoded from; that says nothing to a user.
_BUFFER_REPR = re.compile(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


class ImageList(Sequence[torch.Tensor]):
    """A read-on-access sequence of preprocessed images ``[C, H, W]``.

    Holds only the items (paths, PIL images or tensors) and the preprocessing; every access
    decodes again, nothing is cached.

    Args:
        items: file paths (``str`` / ``Path``), PIL images, or ``[C, H, W]`` float tensors already
            in model space (used as they are).
        preprocessing: how a path or PIL image becomes a tensor.

    Raises:
        EpisodeError: an item of another type.
    """

    def __init__(self, items: Iterable[ImageItem], preprocessing: Preprocessing) -> None:
        self.items: list[ImageItem] = list(items)
        for position, item in enumerate(self.items):
            if not isinstance(item, str | os.PathLike | Image.Image | torch.Tensor):
                raise EpisodeError(
                    f"image #{position} is a {type(item).__name__}; give file paths, PIL images "
                    "or a float tensor [N, C, H, W]"
                )
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, position: int) -> torch.Tensor: ...

    @overload
    def __getitem__(self, position: slice) -> ImageList: ...

    def __getitem__(self, position: int | slice) -> torch.Tensor | ImageList:
        """The image at ``position`` as ``[C, H, W]`` float32; a slice gives another list.

        Raises:
            ImageReadError: the file is missing, unreadable or not a decodable image.
        """
        if isinstance(position, slice):
            return ImageList(self.items[position], self.preprocessing)
        item = self.items[position]
        if isinstance(item, torch.Tensor):
            if item.dim() != 3 or not item.is_floating_point():
                raise EpisodeError(
                    f"image #{position} is a tensor of shape {tuple(item.shape)} and dtype "
                    f"{item.dtype}; give float [C, H, W] tensors in model space"
                )
            return item.float()
        if isinstance(item, Image.Image):
            return self.preprocessing(item)
        return self.preprocessing(open_image(item))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every decoded image."""
        side = self.preprocessing.image_size
        return (self.preprocessing.channels, side, side)

    def load_batch(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Images ``start:stop`` as one tensor ``[b, C, H, W]``."""
        return torch.stack([self[i] for i in range(*slice(start, stop).indices(len(self)))])

    def source(self, position: int) -> str:
        """The file path of the item at ``position``, or ``"image #position"``."""
        item = self.items[position]
        if isinstance(item, str | os.PathLike):
            return os.fspath(item)
        return f"image #{position}"

    def __repr__(self) -> str:
        return f"ImageList({len(self)} images of shape {self.image_shape})"


def as_images(images: Any, preprocessing: Preprocessing) -> torch.Tensor | ImageList:
    """Accept what a user may pass as images: a tensor ``[N, C, H, W]`` or a sequence of items.

    Raises:
        EpisodeError: a single path or string instead of a sequence, a tensor that is not 4-D
            float, or items of an unsupported type.
    """
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or not images.is_floating_point():
            raise EpisodeError(
                f"an image tensor must be float [N, C, H, W] in model space, got shape "
                f"{tuple(images.shape)} and dtype {images.dtype}"
            )
        return images
    if isinstance(images, ImageList):
        return images
    if isinstance(images, str | bytes | os.PathLike | Image.Image):
        raise EpisodeError(
            "images must be a sequence (e.g. a list of file paths), not a single "
            f"{type(images).__name__}; wrap one image in a list"
        )
    return ImageList(images, preprocessing)


def select_images(
    images: torch.Tensor | ImageList, keep: Sequence[int]
) -> torch.Tensor | ImageList:
    """The images at positions ``keep`` (in that order), of the same kind."""
    if isinstance(images, torch.Tensor):
        return images[torch.as_tensor(list(keep), dtype=torch.long)]
    return ImageList([images.items[i] for i in keep], images.preprocessing)


def _source(images: torch.Tensor | ImageList, position: int) -> str:
    return images.source(position) if isinstance(images, ImageList) else f"image #{position}"


def _decode_batch(
    images: torch.Tensor | ImageList, chunk: list[int], on_unreadable: OnUnreadable | None
) -> tuple[torch.Tensor | None, list[int]]:
    """Decode positions ``chunk``: ``([b, C, H, W] or None, positions decoded)``."""
    if isinstance(images, torch.Tensor):
        return images[chunk[0] : chunk[-1] + 1], chunk
    tensors: list[torch.Tensor] = []
    kept: list[int] = []
    for position in chunk:
        try:
            tensors.append(images[position])
        except ImageReadError as error:
            reason = _BUFFER_REPR.sub("", str(error))
            if on_unreadable is None:
                raise ImageReadError(reason) from error
            on_unreadable(Unreadable(position, _source(images, position), reason, _kind(error)))
            continue
        kept.append(position)
    return (torch.stack(tensors) if tensors else None), kept


def _kind(error: ImageReadError) -> str:
    cause = error.__cause__
    if isinstance(cause, Image.DecompressionBombError):
        return "too-large"
    if isinstance(cause, PermissionError):
        return "permission"
    return "corrupt"


def embed_images(
    network: nn.Module,
    images: torch.Tensor | ImageList,
    *,
    batch_size: int,
    device: str | torch.device | None = None,
    on_unreadable: OnUnreadable | None = None,
    show_progress: bool = False,
    desc: str = "embedding",
) -> tuple[torch.Tensor, list[int]]:
    """Run ``network`` (eval mode, no grad) over ``images``, ``batch_size`` images at a time.

    The network's ``training`` flags are restored afterwards. When ``device`` differs from the
    network's, a copy is moved there (the caller's module is not changed).

    Args:
        network: maps ``[b, C, H, W]`` to ``[b, D]``.
        images: a tensor ``[N, C, H, W]`` or an :class:`ImageList`.
        batch_size: images decoded and embedded at once (bounds memory).
        device: where to compute; default the network's device.
        on_unreadable: if given, unreadable images are left out and reported to it; otherwise
            the first one raises.
        show_progress: draw a progress bar (images).
        desc: the bar's label.

    Returns:
        ``(embeddings [n, D] float32 on the CPU, positions of the n embedded images)``.

    Raises:
        ImageReadError: an unreadable image, without ``on_unreadable``.
    """
    target = resolve_device(network, device)
    model = network if module_device(network) == target else copy.deepcopy(network).to(target)
    outputs: list[torch.Tensor] = []
    kept: list[int] = []
    total = len(images)
    bar = progress_bar(total=total, desc=desc, enabled=show_progress, unit="img")
    try:
        with evaluation_mode(model), torch.inference_mode():
            for start in range(0, total, batch_size):
                chunk = list(range(start, min(start + batch_size, total)))
                batch, decoded = _decode_batch(images, chunk, on_unreadable)
                if batch is not None:
                    outputs.append(model(batch.to(target)).float().cpu())
                    kept.extend(decoded)
                bar.update(len(chunk))
    finally:
        bar.close()
    if not outputs:
        return torch.empty(0, 0), kept
    return torch.cat(outputs), kept


def check_images(
    images: torch.Tensor | ImageList,
    *,
    on_unreadable: OnUnreadable,
    batch_size: int = 64,
    show_progress: bool = False,
    desc: str = "checking",
) -> list[int]:
    """Decode every image once; report the unreadable ones; return the readable positions.

    Used before a method that reads the pixels many times (fine-tuning scope ``all``), so that a
    bad file is found up front instead of in the middle of training.
    """
    if isinstance(images, torch.Tensor):
        return list(range(len(images)))
    kept: list[int] = []
    bar = progress_bar(total=len(images), desc=desc, enabled=show_progress, unit="img")
    try:
        for start in range(0, len(images), batch_size):
            chunk = list(range(start, min(start + batch_size, len(images))))
            kept.extend(_decode_batch(images, chunk, on_unreadable)[1])
            bar.update(len(chunk))
    finally:
        bar.close()
    return kept
