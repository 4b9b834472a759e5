"""Typed exceptions. Every message says what is wrong and what to do about it."""

from __future__ import annotations


class AnyshotError(Exception):
    """Base class of every error anyshot raises on purpose."""


class EpisodeError(AnyshotError, ValueError):
    """An episode is malformed: shapes, label types, empty classes, unknown query labels."""


class EmptyClassError(EpisodeError):
    """A class of an episode or dataset has no images."""


class ImageReadError(AnyshotError, OSError):
    """An image file could not be read or decoded; the message names the file."""


class DatasetError(AnyshotError, ValueError):
    """A dataset is missing files, has an unexpected layout, or is too small for a request."""


class CheckpointError(AnyshotError, ValueError):
    """A checkpoint file is not an anyshot checkpoint, is corrupt, or does not match the model."""


class ConfigurationError(AnyshotError, ValueError):
    """Arguments that cannot work together (e.g. augmentation with a cached-feature scope)."""


class EpisodeFileError(AnyshotError, ValueError):
    """An episode file is malformed or names images/classes the dataset does not have."""


class ResultsFileError(AnyshotError, ValueError):
    """A results file cannot be read, or results files cannot be combined into one report."""
