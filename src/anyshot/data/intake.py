"""Finding a practitioner's images on disk, and counting everything that was left out.

* A **support folder** holds one sub-folder per class (the folder name is the label) with that
  class's images at any depth.
* A **query / unlabeled folder** holds images at any depth (several folders or files may be
  given).

Nothing is skipped silently: every file or folder not used is recorded in an
:class:`IntakeReport` with its reason:

=================  ==============================================================================
kind               what
=================  ==============================================================================
``hidden``         a file or folder whose name starts with ``.`` (``.DS_Store``, ``.git``, ...),
                   or a ``__MACOSX`` folder (a Mac's zip metadata)
``not-image``      a file without an image extension (``.bmp .gif .jfif .jpe .jpeg .jpg .png .tif
                   .tiff .webp``), or in a format anyshot does not read (HEIC, AVIF, camera raw)
``outside-class``  a file directly in the support folder, not inside a class folder
``broken-link``    a symbolic link whose target does not exist
``link-cycle``     a folder reached a second time (given twice, or a symbolic-link cycle): not
                   walked again
``empty-class``    a class folder without any image file, left out where empty classes are
                   skipped (``anyshot evaluate``'s class trees: see :func:`scan_support`)
``folder-link``    a symbolic link to a folder inside a class folder that leads back into the
                   support folder (its images would change class), or any such link when links
                   are not followed (``anyshot evaluate``'s class trees: :func:`scan_support`)
``permission``     a file or folder that cannot be read (permission denied)
``special``        a socket, pipe or device file
``corrupt``        an image file that does not decode (corrupt, truncated, not really an
                   image); found while embedding, see :meth:`IntakeReport.skip`
``too-large``      an image over Pillow's decompression-bomb limit (see
                   :mod:`anyshot.data.images`); found while embedding
=================  ==============================================================================

Symbolic links are followed when they point to an image file or a folder. Files with the same
content are reported as :class:`DuplicateFiles` wherever they are: in two classes, twice in one
class, twice in a query folder (at any depths), or in the support and the query
(:func:`report_shared_files`). Content is compared by BLAKE2b hash, only computed for files of
equal size. Duplicates are a warning: every file is still used.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from anyshot.data.files import (
    EXTENSIONS,
    SPLIT_FOLDERS,
    UNREAD_IMAGE_EXTENSIONS,
    is_hidden,
    is_image_file,
)
from anyshot.errors import DatasetError, EmptyClassError, ImageReadError

__all__ = [
    "SKIP_KINDS",
    "DuplicateFiles",
    "ImageFiles",
    "IntakeReport",
    "LabelledFiles",
    "SkippedFile",
    "report_shared_files",
    "scan_images",
    "scan_support",
]

#: Why a file was not used, in words (see the module docstring).
SKIP_KINDS: dict[str, str] = {
    "hidden": "hidden",
    "not-image": "not an image file",
    "outside-class": "not inside a class folder",
    "broken-link": "broken symbolic link",
    "link-cycle": "folder reached twice",
    "folder-link": "linked folder not followed",
    "empty-class": "class folder without images",
    "permission": "permission denied",
    "special": "not a regular file",
    "corrupt": "corrupt or unreadable image",
    "too-large": "image too large to decode safely",
}
#: Folder names that usually hold a set of images, not a class (the split folders too): two or
#: more of them as classes suggest a support folder given one level too high.
SET_FOLDER_NAMES = frozenset(
    {"support", "query", "queries", "unlabeled", "unlabelled", "images", *SPLIT_FOLDERS}
)
#: Kinds that ``strict`` scanning turns into errors (an image or folder that cannot be read).
STRICT_KINDS = frozenset({"permission", "corrupt", "too-large"})
SUPPORT_LAYOUT = (
    "expected layout: SUPPORT/<class name>/<images, at any depth>: one sub-folder per class, "
    f"named after the class ({EXTENSIONS})"
)
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class SkippedFile:
    """A file or folder that was not used: its path, the kind of reason, the reason in words."""

    path: str
    kind: str
    reason: str


@dataclass(frozen=True)
class DuplicateFiles:
    """Files with identical content (two or more).

    Attributes:
        paths: the files (sorted).
        classes: the class of each file, same order; ``""`` for an unlabelled (query) image.
    """

    paths: tuple[str, ...]
    classes: tuple[str, ...]

    def where(self) -> str:
        """Where the copies are, in words: in different classes, in one class, among the
        unlabelled images, or in the support and among the unlabelled images."""
        labelled = {c for c in self.classes if c}
        if not labelled:
            return "among the unlabelled images"
        if "" in self.classes:
            return "in the support and among the unlabelled images"
        if len(labelled) > 1:
            return "in different classes"
        return f"twice in class {next(iter(labelled))}"

    def describe(self) -> str:
        """``a.png (class cat), b.png (class dog)``; unlabelled files by path alone."""
        return ", ".join(
            f"{p} (class {c})" if c else p for p, c in zip(self.paths, self.classes, strict=True)
        )


@dataclass
class IntakeReport:
    """What a scan found and what it left out.

    Attributes:
        roots: the folders (or files) scanned.
        class_counts: images per class (support folders; empty for query folders), in class
            order. Updated by :meth:`skip` when an image turns out unreadable.
        images: number of usable images.
        skipped: every file or folder left out, with its reason.
        duplicates: groups of identical files (a warning: every copy is used).
        warnings: other things worth a look, in words (every file is still used).
    """

    roots: list[str]
    class_counts: dict[str, int] = field(default_factory=dict)
    images: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    duplicates: list[DuplicateFiles] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def skip(self, path: str, kind: str, reason: str, label: str | None = None) -> None:
        """Record that ``path`` is not used; an image counted before is uncounted.

        Args:
            path: the file or folder.
            kind: one of :data:`SKIP_KINDS`.
            reason: the specific reason (e.g. the decoder's message).
            label: the class of an image that was counted in :attr:`class_counts`; ``None``
                for a file that was never counted. Counted query images: pass ``""``.
        """
        if kind not in SKIP_KINDS:
            raise ValueError(f"unknown skip kind {kind!r}; known: {sorted(SKIP_KINDS)}")
        self.skipped.append(SkippedFile(path, kind, reason))
        if label is not None:
            self.images -= 1
            if label:
                self.class_counts[label] -= 1

    def skipped_by_kind(self) -> dict[str, int]:
        """Number of skipped entries of each kind (kinds in :data:`SKIP_KINDS` order)."""
        counts = Counter(s.kind for s in self.skipped)
        return {kind: counts[kind] for kind in SKIP_KINDS if counts[kind]}

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "roots": list(self.roots),
            "images": self.images,
            "class_counts": dict(self.class_counts),
            "skipped_by_kind": self.skipped_by_kind(),
            "skipped": [{"path": s.path, "kind": s.kind, "reason": s.reason} for s in self.skipped],
            "duplicates": [
                {"paths": list(d.paths), "classes": list(d.classes)} for d in self.duplicates
            ],
            "warnings": list(self.warnings),
        }

    def summary_lines(self, name: str, *, listed: int = 10) -> list[str]:
        """Human-readable summary: counts per class, skipped files by reason, duplicates.

        Args:
            name: what was scanned (``"support"``, ``"query"``...).
            listed: at most this many files are named per reason.
        """
        lines: list[str] = []
        if self.class_counts:
            counts = list(self.class_counts.items())
            shown = ", ".join(f"{c}: {n}" for c, n in counts[:50])
            more = f", ... and {len(counts) - 50} more classes" if len(counts) > 50 else ""
            lines.append(f"{name}: {len(counts)} classes, {self.images} images ({shown}{more})")
        else:
            lines.append(f"{name}: {_count(self.images, 'image')}")
        if self.skipped:
            by_kind = ", ".join(f"{SKIP_KINDS[k]}: {n}" for k, n in self.skipped_by_kind().items())
            lines.append(f"  skipped {len(self.skipped)} ({by_kind})")
            by_kind_files: dict[str, list[SkippedFile]] = defaultdict(list)
            for item in self.skipped:
                by_kind_files[item.kind].append(item)
            for kind, items in by_kind_files.items():
                for item in items[:listed]:
                    detail = f": {item.reason}" if item.reason != SKIP_KINDS[kind] else ""
                    lines.append(f"    {item.path} [{SKIP_KINDS[kind]}]{detail}")
                if len(items) > listed:
                    lines.append(f"    ... and {len(items) - listed} more [{SKIP_KINDS[kind]}]")
        lines.extend(f"  warning: {text}" for text in self.warnings)
        for duplicate in self.duplicates[:listed]:
            lines.append(f"  warning: identical files {duplicate.where()}: {duplicate.describe()}")
        if len(self.duplicates) > listed:
            lines.append(
                f"  warning: ... and {len(self.duplicates) - listed} more groups of identical files"
            )
        return lines


@dataclass
class LabelledFiles:
    """Image files with their class labels (sorted by class, then path) and the scan report."""

    paths: list[str]
    labels: list[str]
    report: IntakeReport

    @property
    def classes(self) -> list[str]:
        """The class names, sorted."""
        return list(self.report.class_counts)


@dataclass
class ImageFiles:
    """Unlabelled image files (sorted by path) and the scan report."""

    paths: list[str]
    report: IntakeReport


def scan_support(
    root: str | os.PathLike[str],
    *,
    min_classes: int = 2,
    strict: bool = False,
    find_duplicates: bool = True,
    what: str = "support folder",
    layout: str = SUPPORT_LAYOUT,
    follow_folder_links: bool = True,
    skip_empty_classes: bool = False,
) -> LabelledFiles:
    """Find the images of a folder-per-class tree (a support folder, or the class tree
    ``anyshot evaluate --dataset folder`` reads: :class:`~anyshot.data.folder.FolderDataset`).

    Args:
        root: the support folder: ``root/<class>/<images at any depth>``.
        min_classes: refuse fewer classes (a classifier needs 2).
        strict: an image file or folder that cannot be read is an error, not a skip.
        find_duplicates: look for identical files (in different classes or in one).
        what: what ``root`` is, in messages.
        layout: the expected layout, in messages.
        follow_folder_links: walk symbolic links to folders inside the class folders (a class
            folder that is itself a link is always read). ``False`` for a dataset: a link into
            another class's folder would move its images to this class, and the seeded
            episodes of a tree must not change with its links.
        skip_empty_classes: leave a class folder without images out (recorded as skipped,
            kind ``empty-class``) instead of refusing it; ``True`` for a dataset, where the
            other classes can still be evaluated.

    Raises:
        DatasetError: ``root`` missing or not a folder, no class folders, fewer than
            ``min_classes`` classes.
        EmptyClassError: a class folder without any image file (the message names it).
        ImageReadError: ``strict`` and an unreadable image file or folder.
    """
    top = os.fspath(root)
    _check_root(top, what, layout)
    report = IntakeReport([top])
    walker = _Walker(report, strict, follow_folder_links, classes_in=top)
    walker.enter(top)
    class_dirs: list[tuple[str, str]] = []
    for entry, kind in walker.entries(top):
        if kind == "dir":
            class_dirs.append((entry.name, entry.path))
        elif kind == "file":
            report.skip(
                entry.path,
                "outside-class",
                f"file directly in the {what}; move it into its class folder",
            )
    if not class_dirs:
        raise DatasetError(
            f"{what} {top!r} has no class folders"
            + (f" ({len(report.skipped)} files skipped)" if report.skipped else "")
            + f"; {layout}"
        )
    paths, labels = _class_images(walker, class_dirs, skip_empty_classes, layout)
    report.images = len(paths)
    looks_like_sets = sorted(name for name, _ in class_dirs if name.lower() in SET_FOLDER_NAMES)
    if len(looks_like_sets) >= 2:  # one may be a real class (a "train" among vehicles)
        report.warnings.append(
            f"class folder(s) named {', '.join(looks_like_sets)}: is {top!r} the folder above "
            f"the {what}? The {what}'s sub-folders are the classes"
        )
    if len(report.class_counts) < min_classes:
        only = ", ".join(
            f"{name!r} ({_count(count, 'image')})" for name, count in report.class_counts.items()
        )
        raise DatasetError(
            f"{what} {top!r} has {_count(len(report.class_counts), 'class folder')} with "
            f"images: {only or 'none'}. "
            f"A classifier needs at least {min_classes} classes: add a folder of images for each "
            "other class (e.g. the images that are NOT of this class)."
        )
    if find_duplicates:
        paths, labels = _find_duplicates(paths, labels, report, strict)
        emptied = [name for name, count in report.class_counts.items() if count == 0]
        if emptied:
            raise EmptyClassError(
                f"no readable image left in class folder(s) {emptied} of {top!r}; fix the "
                "file permissions or remove the folder(s)"
            )
    return LabelledFiles(paths, labels, report)


def _class_images(
    walker: _Walker, class_dirs: list[tuple[str, str]], skip_empty: bool, layout: str
) -> tuple[list[str], list[str]]:
    """The image files and labels of the ``(name, folder)`` classes, sorted by class, counted
    in the walker's report; a class without an image file is refused (:class:`EmptyClassError`)
    or, with ``skip_empty``, recorded as skipped."""
    report = walker.report
    paths: list[str] = []
    labels: list[str] = []
    for name, folder in sorted(class_dirs):
        before = len(report.skipped)
        files = walker.images(folder) if walker.enter(folder) else []
        if not files:
            skipped = report.skipped[before:]
            detail = ""
            if skipped:
                kinds = Counter(SKIP_KINDS[s.kind] for s in skipped)
                detail = " (skipped: " + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")"
            if skip_empty:
                report.skip(folder, "empty-class", f"no image file{detail}: class left out")
                continue
            raise EmptyClassError(
                f"class folder {folder!r} contains no image files{detail}; add images of class "
                f"{name!r} or remove the folder. {layout}"
            )
        report.class_counts[name] = len(files)
        paths.extend(files)
        labels.extend([name] * len(files))
    return paths, labels


def scan_images(
    sources: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    strict: bool = False,
    require: bool = True,
    find_duplicates: bool = True,
) -> ImageFiles:
    """Find image files: each source is an image file or a folder searched at any depth.

    Args:
        sources: files and/or folders.
        strict: an image file or folder that cannot be read is an error, not a skip.
        require: refuse when no image is found.
        find_duplicates: look for identical files among those found (at any depths).

    Raises:
        DatasetError: a source that does not exist, or (``require``) no image at all.
        ImageReadError: ``strict`` and an unreadable image file or folder.
    """
    items = [os.fspath(sources)] if isinstance(sources, str | os.PathLike) else list(sources)
    names = [os.fspath(s) for s in items]
    if not names:
        raise DatasetError("no images given: name image files or folders")
    report = IntakeReport(names)
    walker = _Walker(report, strict)
    found: list[str] = []
    for name in names:
        if os.path.islink(name) and not os.path.exists(name):
            report.skip(name, "broken-link", f"target {os.readlink(name)!r} does not exist")
            continue
        if not os.path.exists(name):
            raise DatasetError(f"{name!r} does not exist; give image files or folders of images")
        if os.path.isdir(name):
            if walker.enter(name):
                found.extend(walker.images(name))
        else:
            walker.add_file(name, found)
    paths = sorted(dict.fromkeys(found))
    if find_duplicates:
        paths, _ = _find_duplicates(paths, [""] * len(paths), report, strict)
    report.images = len(paths)
    if require and not paths:
        detail = f" ({len(report.skipped)} files skipped)" if report.skipped else ""
        raise DatasetError(
            f"no image files found in {', '.join(repr(n) for n in names)}{detail}; images are "
            f"files ending in {EXTENSIONS}, at any depth"
        )
    return ImageFiles(paths, report)


# --- walking ------------------------------------------------------------------------------
def _check_root(path: str, what: str, layout: str) -> None:
    if not os.path.exists(path):
        raise DatasetError(f"{what} {path!r} does not exist; {layout}")
    if not os.path.isdir(path):
        raise DatasetError(f"{what} {path!r} is not a folder; {layout}")


class _Walker:
    """Walks folders once each (symbolic-link cycles are cut), recording every skip."""

    def __init__(
        self,
        report: IntakeReport,
        strict: bool,
        follow_links: bool = True,
        classes_in: str | None = None,
    ) -> None:
        self.report = report
        self.strict = strict
        self.follow_links = follow_links
        #: The support folder whose sub-folders are classes: a link below a class folder that
        #: leads back into it is not followed.
        self.classes_in = None if classes_in is None else os.path.realpath(classes_in)
        self.visited: set[tuple[int, int]] = set()

    def skip(self, path: str, kind: str, reason: str) -> None:
        if self.strict and kind in STRICT_KINDS:
            raise ImageReadError(f"cannot read {path!r}: {reason} (--strict stops here)")
        self.report.skip(path, kind, reason)

    def enter(self, folder: str) -> bool:
        """Mark ``folder`` visited; ``False`` (and a skip) if it was visited before."""
        try:
            info = os.stat(folder)
        except OSError as error:
            self.skip(folder, "permission", error.strerror or str(error))
            return False
        key = (info.st_dev, info.st_ino)
        if key in self.visited:
            self.report.skip(
                folder,
                "link-cycle",
                "folder already scanned (given twice, or reached again through a symbolic link); "
                "not walked twice",
            )
            return False
        self.visited.add(key)
        return True

    def entries(self, folder: str) -> Iterable[tuple[os.DirEntry[str], str]]:
        """``(entry, "dir" | "file")`` for the usable entries of ``folder``, sorted by name."""
        try:
            with os.scandir(folder) as scan:
                listing = sorted(scan, key=lambda e: e.name)
        except PermissionError:
            self.skip(folder, "permission", "permission denied: cannot list the folder")
            return
        except OSError as error:
            self.skip(folder, "permission", f"cannot list the folder: {error.strerror}")
            return
        for entry in listing:
            kind = self._kind(entry)
            if kind is not None:
                yield entry, kind

    def _kind(self, entry: os.DirEntry[str]) -> str | None:
        """``"dir"``, ``"file"`` or ``None`` (recorded as skipped)."""
        path = entry.path
        if is_hidden(entry.name):
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            self.report.skip(path, "hidden", "hidden folder" if is_dir else "hidden file")
            return None
        try:
            info = os.stat(path)  # follows symbolic links
        except FileNotFoundError:
            target = _readlink(path)
            self.report.skip(path, "broken-link", f"target {target!r} does not exist")
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                self.report.skip(path, "link-cycle", "symbolic link loop")
            else:
                self.skip(path, "permission", error.strerror or str(error))
            return None
        if stat.S_ISDIR(info.st_mode):
            return "dir"
        if not stat.S_ISREG(info.st_mode):
            self.report.skip(path, "special", "not a regular file (socket, pipe or device)")
            return None
        return "file"

    def images(self, folder: str) -> list[str]:
        """Image files below ``folder`` (already entered), at any depth, sorted by path."""
        found: list[str] = []
        stack = [folder]
        while stack:
            current = stack.pop()
            for entry, kind in self.entries(current):
                if kind == "dir" and entry.is_symlink() and not self._follows(entry.path):
                    continue
                if kind == "dir":
                    if self.enter(entry.path):
                        stack.append(entry.path)
                else:
                    self.add_file(entry.path, found)
        return sorted(found)

    def _follows(self, link: str) -> bool:
        """Whether to walk the folder a symbolic link inside a class folder leads to; if not,
        the link is recorded as skipped."""
        if not self.follow_links:
            self.report.skip(link, "folder-link", "symbolic link to a folder: not followed")
            return False
        target = os.path.realpath(link)
        if self.classes_in is not None and os.path.commonpath([target, self.classes_in]) == (
            self.classes_in
        ):
            inside = os.path.relpath(target, self.classes_in).split(os.sep)[0]
            self.report.skip(
                link,
                "folder-link",
                f"symbolic link into the class folder {inside!r}: not followed (its images keep "
                "their own class)",
            )
            return False
        return True

    def add_file(self, path: str, found: list[str]) -> None:
        """Append ``path`` to ``found`` if it is a readable image file; else record why not."""
        if not is_image_file(path):
            extension = os.path.splitext(path)[1] or "no extension"
            if extension.lower() in UNREAD_IMAGE_EXTENSIONS:
                reason = f"an image format anyshot does not read ({extension}): convert it to JPEG"
            else:
                reason = f"not an image file ({extension})"
            self.report.skip(path, "not-image", reason)
            return
        if not os.access(path, os.R_OK):
            self.skip(path, "permission", "permission denied: cannot read the file")
            return
        found.append(path)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


# --- duplicates ---------------------------------------------------------------------------
def _find_duplicates(
    paths: list[str], labels: list[str], report: IntakeReport, strict: bool
) -> tuple[list[str], list[str]]:
    """Report every group of identical files (labels ``""`` for unlabelled images); drop (and
    report) files that fail to read. Only files sharing their size with another are hashed."""
    unreadable: set[int] = set()

    def failed(index: int, error: OSError) -> None:
        reason = f"cannot read the file: {error.strerror or error}"
        if strict:
            raise ImageReadError(f"{paths[index]!r}: {reason}") from error
        report.skip(paths[index], "permission", reason, label=labels[index] or None)
        unreadable.add(index)

    for group in _identical_groups(paths, range(len(paths)), failed):
        report.duplicates.append(_duplicate(paths, labels, group))
    report.duplicates.sort(key=lambda d: d.paths)
    if not unreadable:
        return paths, labels
    keep = [i for i in range(len(paths)) if i not in unreadable]
    return [paths[i] for i in keep], [labels[i] for i in keep]


def report_shared_files(support: LabelledFiles, images: ImageFiles) -> None:
    """Add to ``images.report`` each group of identical files found both in ``support`` and
    among ``images`` (an image to classify that is also a labelled example). A file that
    cannot be read here is left to the embedding, which reports it."""
    paths = [*support.paths, *images.paths]
    labels = [*support.labels, *([""] * len(images.paths))]

    def ignore(index: int, error: OSError) -> None:
        del index, error

    first_image = len(support.paths)
    for group in _identical_groups(paths, range(len(paths)), ignore):
        if group[0] < first_image <= group[-1]:  # groups are in index order
            images.report.duplicates.append(_duplicate(paths, labels, group))
    images.report.duplicates.sort(key=lambda d: d.paths)


def _identical_groups(
    paths: Sequence[str], indices: Iterable[int], failed: Callable[[int, OSError], None]
) -> list[list[int]]:
    """Groups (two or more, in index order) of ``indices`` whose files have identical content;
    ``failed(index, error)`` for a file that cannot be read (it joins no group)."""
    by_size: dict[int, list[int]] = defaultdict(list)
    for index in indices:
        by_size[os.path.getsize(paths[index])].append(index)
    groups: list[list[int]] = []
    for members in by_size.values():
        if len(members) < 2:
            continue
        by_digest: dict[bytes, list[int]] = defaultdict(list)
        for index in members:
            try:
                by_digest[_digest(paths[index])].append(index)
            except OSError as error:
                failed(index, error)
        groups += [sorted(group) for group in by_digest.values() if len(group) > 1]
    return groups


def _duplicate(paths: Sequence[str], labels: Sequence[str], group: list[int]) -> DuplicateFiles:
    ordered = sorted(group, key=lambda i: paths[i])
    return DuplicateFiles(tuple(paths[i] for i in ordered), tuple(labels[i] for i in ordered))


def _digest(path: str) -> bytes:
    hasher = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            hasher.update(chunk)
    return hasher.digest()
