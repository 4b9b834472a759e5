"""Datasets and image preprocessing.

* :class:`ImageDataset` — the labelled, lazily decoded image collection every loader returns;
  :class:`LazyImages` — a read-on-access sequence of its images as tensors.
* Loaders: :class:`FolderDataset` (a folder per class), :class:`Omniglot` (official zips, Vinyals
  split), :class:`MiniImageNet` (Ravi & Larochelle CSVs or a folder per split),
  :class:`TieredImageNet` (PNG-bytes pickles), :class:`CifarFS` and :class:`FC100` (CIFAR-100
  pickles); :func:`load_dataset` builds one by name.
* :class:`Preprocessing` and :func:`open_image` turn image files into model-space tensors.
"""

from anyshot.data.cifar_fs import CifarFS
from anyshot.data.dataset import FileDataset, ImageDataset, LazyImages
from anyshot.data.fc100 import FC100
from anyshot.data.files import IMAGE_EXTENSIONS
from anyshot.data.folder import FolderDataset
from anyshot.data.images import Preprocessing, decode_image, open_image
from anyshot.data.miniimagenet import MiniImageNet
from anyshot.data.omniglot import Omniglot, sample_root
from anyshot.data.registry import available_datasets, load_dataset
from anyshot.data.tiered_imagenet import TieredImageNet

__all__ = [
    "FC100",
    "IMAGE_EXTENSIONS",
    "CifarFS",
    "FileDataset",
    "FolderDataset",
    "ImageDataset",
    "LazyImages",
    "MiniImageNet",
    "Omniglot",
    "Preprocessing",
    "TieredImageNet",
    "available_datasets",
    "decode_image",
    "load_dataset",
    "open_image",
    "sample_root",
]
