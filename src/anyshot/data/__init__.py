"""Datasets and image preprocessing.

* :class:`ImageDataset` — the labelled, lazily decoded image collection every loader returns;
  :class:`LazyImages` — a read-on-access sequence of its images as tensors.
* Loaders: :class:`FolderDataset` (a folder per class), :class:`Omniglot` (official zips, Vinyals
  split), :class:`MiniImageNet` (Ravi & Larochelle CSVs); :func:`load_dataset` builds one by name.
* :class:`Preprocessing` and :func:`open_image` turn image files into model-space tensors.
"""

from anyshot.data.dataset import FileDataset, ImageDataset, LazyImages
from anyshot.data.folder import IMAGE_EXTENSIONS, FolderDataset
from anyshot.data.images import Preprocessing, decode_image, open_image
from anyshot.data.miniimagenet import MiniImageNet
from anyshot.data.omniglot import Omniglot, sample_root
from anyshot.data.registry import available_datasets, load_dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "FileDataset",
    "FolderDataset",
    "ImageDataset",
    "LazyImages",
    "MiniImageNet",
    "Omniglot",
    "Preprocessing",
    "available_datasets",
    "decode_image",
    "load_dataset",
    "open_image",
    "sample_root",
]
