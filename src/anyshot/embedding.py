"""Streaming images through a network: decode a batch, embed it, keep only the embeddings.

Images reach a network as one of

* a float tensor ``[N, C, H, W]`` already in model space (sliced into batches), or
* an :class:`ImageList`: file paths, PIL images or ``[C, H, W]`` tensors, decoded and preprocessed
  only when a batch needs them.

:func:`embed_images` runs a frozen network over them ``batch_size`` images at a time, so memory is
bounded by one batch of pixels plus the ``[N, D]`` embeddings, whatever ``N`` is. Its loop,
:func:`embedding_batches`, is the only one in anyshot that embeds images: the
:class:`~anyshot.feature_cache.FeatureCache` runs it too. Both take the forward pass's precision
(``dtype``: float32, or bfloat16 where the CPU has it, see
:func:`~anyshot.feature_cache.fastest_dtype`) and memory layout (``channels_last``). An unreadable
image either raises :class:`~anyshot.errors.ImageReadError` (the default) or, when an
``on_unreadable`` callback is given, is left out and reported to it as an :class:`Unreadable`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, overload

import torch
from PIL import Image
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from anyshot.data.images import Preprocessing, load_file
from anyshot.errors import ConfigurationError, EpisodeError, ImageReadError
from anyshot.heap import reused_heap
from anyshot.methods.frozen import evaluation_mode, module_device, resolve_device
from anyshot.progress import progress_bar
from anyshot.threads import available_cores

__all__ = [
    "BATCH_VALUES",
    "DTYPES",
    "ImageItem",
    "ImageList",
    "Images",
    "OnUnreadable",
    "Unreadable",
    "as_images",
    "check_images",
    "embed_images",
    "embedding_batches",
    "fold_batch_norm",
    "inference_network",
    "memory_batch_size",
    "model_input",
    "select_images",
    "torch_dtype",
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

    #: File paths are decoded for the preprocessing's size (a large JPEG at a reduced scale,
    #: :func:`~anyshot.data.decode_image`); feature caches key such rows apart.
    decode_for_size = True

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
        return load_file(item, self.preprocessing)

    def is_file(self, position: int) -> bool:
        """Whether the item at ``position`` is a file path (decoded from the file on access)."""
        return isinstance(self.items[position], str | os.PathLike)

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


def native_side(images: torch.Tensor | ImageList, sample: int = 32) -> int | None:
    """The median longer side in pixels of the first ``sample`` images as given (file headers
    only: nothing is decoded), ``None`` for images already in model space (tensors) or when
    none can be read."""
    if isinstance(images, torch.Tensor):
        return None
    sides = []
    for item in images.items[:sample]:
        if isinstance(item, Image.Image):
            sides.append(max(item.size))
        elif isinstance(item, str | os.PathLike):
            try:
                with Image.open(item) as image:
                    sides.append(max(image.size))
            except Exception:
                continue
    if not sides:
        return None
    return int(sorted(sides)[len(sides) // 2])


def select_images(
    images: torch.Tensor | ImageList, keep: Sequence[int]
) -> torch.Tensor | ImageList:
    """The images at positions ``keep`` (in that order), of the same kind."""
    if isinstance(images, torch.Tensor):
        return images[torch.as_tensor(list(keep), dtype=torch.long)]
    return ImageList([images.items[i] for i in keep], images.preprocessing)


#: Precision names of a forward pass -> torch dtype.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}

#: What :func:`embed_images` accepts: a tensor ``[N, C, H, W]`` in model space or a read-on-access
#: sequence of ``[C, H, W]`` images (:class:`ImageList`, a dataset's ``LazyImages``).
Images = torch.Tensor | Sequence[torch.Tensor]


#: Input values of one forward pass at most (32 RGB images of 224 px): the activations of a batch
#: dominate peak memory. ``anyshot classify`` (EfficientNet-Lite0, bfloat16, 224 px, 125 images)
#: peaked at 755 MB resident with batches of 64, at 576 MB with 32, at the same speed.
BATCH_VALUES = 32 * 3 * 224 * 224


def memory_batch_size(batch_size: int, image_shape: tuple[int, int, int]) -> int:
    """``batch_size``, lowered so that a batch of ``image_shape`` ``(C, H, W)`` images holds at
    most :data:`BATCH_VALUES` values (at least 1): 32 at 224 px RGB, ``batch_size`` at 84 px."""
    channels, height, width = image_shape
    return max(1, min(batch_size, BATCH_VALUES // max(1, channels * height * width)))


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a precision name of :data:`DTYPES`.

    Raises:
        ConfigurationError: an unknown name.
    """
    if dtype not in DTYPES:
        raise ConfigurationError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def fold_batch_norm(network: nn.Module) -> nn.Module:
    """Fold the batch-norms of ``network.batch_norm_after_conv()`` into their convolutions, in
    place, for inference: each convolution takes the batch-norm's running statistics and
    affine weights into its own weights and bias, and the batch-norm becomes an identity.

    The result computes the same function in eval mode up to float rounding (about 1e-7
    relative in float32) with one pass over each activation fewer: EfficientNet-Lite0 ran
    about 1.3x the images/s at 224 px on a CPU, in float32 and in bfloat16. Only for a private
    copy in eval mode (training would update statistics that are gone); a module without
    ``batch_norm_after_conv`` is returned unchanged.
    """
    pairs: list[tuple[str, str]] = getattr(network, "batch_norm_after_conv", list)()
    modules = dict(network.named_modules())
    for conv_name, norm_name in pairs:
        conv, norm = modules[conv_name], modules[norm_name]
        if not isinstance(conv, nn.Conv2d) or not isinstance(norm, nn.BatchNorm2d):
            raise ConfigurationError(f"{conv_name} -> {norm_name} is not a Conv2d -> BatchNorm2d")
        _replace(network, conv_name, fuse_conv_bn_eval(conv.eval(), norm.eval()))
        _replace(network, norm_name, nn.Identity())
    return network


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def inference_network(
    network: nn.Module,
    device: torch.device,
    *,
    dtype: str = "float32",
    channels_last: bool = False,
    private: bool = False,
    fold: bool = False,
) -> nn.Module:
    """The module to run: ``network`` itself, or a copy when anything about it must change.

    A copy is made when the device differs, when ``dtype`` is not ``"float32"``, when ``fold``
    or when ``private`` (the caller will transform it, e.g. trace it). A converted copy
    (``dtype``, ``fold`` or ``private``) gets its batch-norms folded (``fold``,
    :func:`fold_batch_norm`), the weights in ``dtype`` and, with ``channels_last``,
    channels-last weights. The caller's module is never changed.
    """
    convert = private or fold or torch_dtype(dtype) != torch.float32
    if not convert and module_device(network) == device:
        return network
    model = copy.deepcopy(network).to(device)
    if fold:
        model = fold_batch_norm(model.eval())
    if convert:
        model = model.to(torch_dtype(dtype))
        if channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def model_input(
    batch: torch.Tensor, device: torch.device, *, dtype: str = "float32", channels_last: bool
) -> torch.Tensor:
    """A decoded batch ``[b, C, H, W]`` on ``device``, in ``dtype``, channels-last if asked."""
    batch = batch.to(device)
    if torch_dtype(dtype) != torch.float32:
        batch = batch.to(torch_dtype(dtype))
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def _source(images: Images, position: int) -> str:
    source = getattr(images, "source", None)
    return str(source(position)) if callable(source) else f"image #{position}"


#: Most threads :func:`embedding_batches` decodes on: each may hold a whole decoded image
#: (a large PNG or TIFF is not decoded at a reduced scale: up to hundreds of MB each).
MAX_DECODE_THREADS = 4


def _decoded(images: Images, position: int) -> torch.Tensor | Exception:
    """Image ``position`` as ``[C, H, W]``, or the error its decoding raised."""
    try:
        return images[position]
    except Exception as error:  # raised again by the caller, in position order
        return error


def _is_file(images: Images, position: int) -> bool:
    """Whether item ``position`` is read from a file of its own (a file path of an
    :class:`ImageList`, a :class:`~anyshot.data.FileDataset` item of ``LazyImages``, through any
    wrapper that forwards ``is_file``): the only items decoded on other threads (a PIL image is
    not safe to load from two threads, other sequences promise nothing)."""
    is_file = getattr(images, "is_file", None)
    return bool(is_file(position)) if callable(is_file) else False


def _decode_batch(
    images: Images,
    chunk: list[int],
    on_unreadable: OnUnreadable | None,
    pool: ThreadPoolExecutor | None = None,
) -> tuple[torch.Tensor | None, list[int]]:
    """Decode positions ``chunk``, the file items on ``pool``'s threads when given (Pillow
    decodes and resizes without holding Python's lock), the others in this thread:
    ``([b, C, H, W] or None, positions decoded)``. Unreadable images are reported, and other
    errors raised, in position order, as a sequential decode would."""
    if isinstance(images, torch.Tensor):
        return images[chunk[0] : chunk[-1] + 1], chunk
    results: dict[int, torch.Tensor | Exception] = {}
    if pool is not None:
        threaded = [p for p in chunk if _is_file(images, p)]
        results = dict(
            zip(threaded, pool.map(lambda p: _decoded(images, p), threaded), strict=True)
        )
    tensors: list[torch.Tensor] = []
    kept: list[int] = []
    for position in chunk:
        result = results[position] if position in results else _decoded(images, position)
        if isinstance(result, ImageReadError):
            reason = str(result)
            if on_unreadable is None:
                raise result
            on_unreadable(Unreadable(position, _source(images, position), reason, _kind(result)))
            continue
        if isinstance(result, Exception):
            raise result
        tensors.append(result)
        kept.append(position)
    return (torch.stack(tensors) if tensors else None), kept


def _kind(error: ImageReadError) -> str:
    cause = error.__cause__
    if isinstance(cause, Image.DecompressionBombError):
        return "too-large"
    if isinstance(cause, PermissionError):
        return "permission"
    return "corrupt"


def embedding_batches(
    model: nn.Module,
    images: Images,
    *,
    batch_size: int,
    dtype: str = "float32",
    channels_last: bool = False,
    on_unreadable: OnUnreadable | None = None,
    bar: Any = None,
    decode_threads: int | None = None,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """The one embedding loop: ``(positions, rows [b, D] float32 on the CPU)`` per batch.

    Decodes ``batch_size`` images at a time (nothing else of the pixels is kept), feeds them to
    ``model`` as :func:`model_input` prepares them (on the model's device) under
    ``torch.inference_mode`` (entered per batch, never across a ``yield``). ``model`` is run as
    given: make it with :func:`inference_network` and put it in eval mode
    (:func:`~anyshot.methods.frozen.evaluation_mode`) around the iteration.

    Args:
        model: maps ``[b, C, H, W]`` (in ``dtype``) to ``[b, D]``.
        images: a tensor ``[N, C, H, W]`` or a sequence of ``[C, H, W]`` images.
        batch_size: images decoded and embedded at once (bounds memory).
        dtype, channels_last: how batches are fed (see :func:`model_input`).
        on_unreadable: if given, unreadable images are left out and reported to it; otherwise
            the first one raises :class:`~anyshot.errors.ImageReadError`.
        bar: a :func:`~anyshot.progress.progress_bar`, advanced by the images of each batch.
        decode_threads: threads that decode each batch's files (the file paths of an
            :class:`ImageList`, a file dataset's items; other items are decoded in the
            calling thread) before the network runs on it (``None``: every core this process
            may use, even those other work keeps busy, and at least torch's thread count; at
            most :data:`MAX_DECODE_THREADS`). Decoding a camera photo costs more than
            embedding it, so with two threads a batch of photos is ready in about half the
            time; unlike torch's threads, which spin at each operation's end and collapse when
            a core is taken, decoding threads only share the cores fairly with other work.
            1 decodes everything in the calling thread.
    """
    if batch_size < 1:
        raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}")
    if decode_threads is None:
        threads = max(available_cores(), torch.get_num_threads())
    else:
        threads = decode_threads
    if threads < 1:
        raise ConfigurationError(f"decode_threads must be at least 1, got {threads}")
    device = module_device(model)
    total = len(images)
    threads = min(threads, MAX_DECODE_THREADS, total)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="anyshot-decode") if threads > 1 else None
    try:
        with reused_heap():  # each batch reuses the last one's pages; freed once at the end
            for start in range(0, total, batch_size):
                chunk = list(range(start, min(start + batch_size, total)))
                batch, decoded = _decode_batch(images, chunk, on_unreadable, pool)
                if batch is not None:
                    x = model_input(batch, device, dtype=dtype, channels_last=channels_last)
                    del batch
                    with torch.inference_mode():
                        rows = model(x).float().cpu().contiguous()
                    del x
                    yield decoded, rows
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if pool is not None:
            pool.shutdown()


def embed_images(
    network: nn.Module,
    images: Images,
    *,
    batch_size: int,
    device: str | torch.device | None = None,
    on_unreadable: OnUnreadable | None = None,
    show_progress: bool = False,
    desc: str = "embedding",
    dtype: str = "float32",
    channels_last: bool = False,
    decode_threads: int | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """Run ``network`` (eval mode, no grad) over ``images``, ``batch_size`` images at a time.

    The network's ``training`` flags are restored afterwards. When ``device`` differs from the
    network's, or ``dtype`` is not float32, a copy is used (the caller's module is not changed).
    The defaults (float32, contiguous input) reproduce a plain ``network(batch)``; the fast path
    is ``dtype=fastest_dtype()``, ``channels_last=True`` (what
    :class:`~anyshot.feature_cache.FeatureCache` runs, through the same loop).

    Args:
        network: maps ``[b, C, H, W]`` to ``[b, D]``.
        images: a tensor ``[N, C, H, W]`` or an :class:`ImageList` (any sequence of
            ``[C, H, W]`` images).
        batch_size: images decoded and embedded at once (bounds memory).
        device: where to compute; default the network's device.
        on_unreadable: if given, unreadable images are left out and reported to it; otherwise
            the first one raises.
        show_progress: draw a progress bar (images, with rate and ETA).
        desc: the bar's label.
        dtype: precision of the forward pass, ``"float32"`` or ``"bfloat16"``.
        channels_last: feed channels-last batches (and weights, for a converted copy).
        decode_threads: see :func:`embedding_batches`.

    Returns:
        ``(embeddings [n, D] float32 on the CPU, positions of the n embedded images)``.

    Raises:
        ImageReadError: an unreadable image, without ``on_unreadable``.
        ConfigurationError: an unknown ``dtype`` or ``batch_size`` below 1.
    """
    target = resolve_device(network, device)
    model = inference_network(network, target, dtype=dtype, channels_last=channels_last)
    outputs: list[torch.Tensor] = []
    kept: list[int] = []
    bar = progress_bar(total=len(images), desc=desc, enabled=show_progress, unit="img")
    try:
        with evaluation_mode(model):
            for decoded, rows in embedding_batches(
                model,
                images,
                batch_size=batch_size,
                dtype=dtype,
                channels_last=channels_last,
                on_unreadable=on_unreadable,
                bar=bar,
                decode_threads=decode_threads,
            ):
                outputs.append(rows)
                kept.extend(decoded)
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
