"""The content digests of image files, remembered so that a file is read once.

The feature cache keys a row by the *bytes* of the file behind an image
(:mod:`anyshot.feature_cache`), so a copied, moved, re-downloaded or touched file keeps its
cached features and only new content is embedded again. Reading every file on every run would
cost a repeat run on a large photo folder most of its time, so :class:`FileDigests` remembers
each digest under the file's path, size, modification time, change time and inode number
(``os.stat``): a file whose five are unchanged is not read again, in this process (memory) or
a later one (the folder). On Linux and macOS the change time is set by the system on every
write and cannot be set back (``cp --preserve=timestamps``, ``rsync``, ``tar`` and ``unzip``
restore the modification time), so a file rewritten with the same size and modification time
is read again, not taken for its old content; on Windows ``st_ctime`` is the creation time and
an in-place rewrite that restores the modification time goes unnoticed.

**On disk.** ``DIRECTORY/digests-<time>-<random>.json``, each ``{"files": [[path, size,
mtime_ns, ctime_ns, inode, sha256], ...]}`` written atomically by :meth:`FileDigests.save`
with the digests computed since the last save (files of the earlier ``[path, size, mtime_ns,
sha256]`` form are ignored: their files are read once more). Several processes may share the
folder (names never collide); an unreadable or foreign file is ignored, and a folder that
cannot be written keeps the digests in memory only. When a save leaves more than
:data:`MERGE_AT` digest files, they are merged into one and removed (old-form and damaged files
too), keeping only the entries whose file still has the same size, times and inode, so that
the folder grows neither a file per run nor entries for files that are gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from pathlib import Path

from anyshot.io import atomic_write_text

__all__ = ["MERGE_AT", "FileDigests", "file_of"]

#: A save that leaves more digest files than this in the folder merges them into one.
MERGE_AT = 32

_ZIP_MARK = ".zip:"

#: ``(canonical path, size, mtime_ns, ctime_ns, inode)``: what identifies a file's content
#: without reading it.
_Stat = tuple[str, int, int, int, int]


def file_of(source: str) -> tuple[str | None, str]:
    """``(file, rest)`` of a dataset source string: the existing file behind it, made absolute
    and free of symlinks (the source itself, or the archive of ``"<archive>.zip:<member>..."``),
    and what follows it (``""``, or ``":<member>@rotDDD"``); ``(None, source)`` when no file
    exists."""
    if os.path.isfile(source):
        return os.path.realpath(source), ""
    cut = source.rfind(_ZIP_MARK)
    if cut >= 0:
        archive = source[: cut + len(_ZIP_MARK) - 1]
        if os.path.isfile(archive):
            return os.path.realpath(archive), source[len(archive) :]
    return None, source


class FileDigests:
    """``sha256`` of files' contents, remembered by path, size, modification and change times
    and inode number.

    Args:
        directory: where to remember them across processes; ``None`` = this object only.
    """

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.directory = None if directory is None else Path(directory)
        #: Files read and hashed by this object (not found in memory or the folder).
        self.hashed = 0
        self._known: dict[_Stat, str] = {}
        self._new: dict[_Stat, str] = {}
        self._loaded = False

    def digest(self, path: str) -> str | None:
        """The hex ``sha256`` of the file at ``path`` (a canonical path, as :func:`file_of`
        gives), or ``None`` when it cannot be read."""
        try:
            stat = os.stat(path)
        except OSError:
            return None
        key = (path, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
        self._load()
        known = self._known.get(key)
        if known is not None:
            return known
        try:
            with open(path, "rb") as file:
                value = hashlib.file_digest(file, "sha256").hexdigest()
        except OSError:
            return None
        self.hashed += 1
        self._known[key] = self._new[key] = value
        return value

    def save(self) -> None:
        """Write the digests computed since the last save as one file of the folder (none
        without a folder or new digests; a folder that cannot be written is skipped: the
        digests only save reading files again)."""
        if self.directory is None or not self._new:
            return
        entries = [[*key, value] for key, value in self._new.items()]
        name = f"digests-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        with contextlib.suppress(OSError):
            atomic_write_text(self.directory / name, json.dumps({"files": entries}))
        self._new.clear()
        self._merge()

    def _merge(self) -> None:
        """Over :data:`MERGE_AT` digest files in the folder: write the entries whose file is
        unchanged as one file, then remove the files read (old-form and damaged ones too).
        Another process that lists the folder meanwhile reads either; one that misses both
        reads its files once more."""
        assert self.directory is not None
        stored = sorted(self.directory.glob("digests-*.json"))
        if len(stored) <= MERGE_AT:
            return
        merged: dict[_Stat, str] = {}
        for path in stored:
            merged.update(_read(path) or {})
        rows = [[*key, value] for key, value in merged.items() if _unchanged(key)]
        name = f"digests-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        try:
            atomic_write_text(self.directory / name, json.dumps({"files": rows}))
        except OSError:
            return
        for path in stored:
            with contextlib.suppress(OSError):
                path.unlink()

    def _load(self) -> None:
        """Read the folder's digest files once (unreadable ones are skipped)."""
        if self._loaded:
            return
        self._loaded = True
        if self.directory is None or not self.directory.is_dir():
            return
        for stored in sorted(self.directory.glob("digests-*.json")):
            for key, value in (_read(stored) or {}).items():
                self._known.setdefault(key, value)


def _unchanged(key: _Stat) -> bool:
    """Whether the file of a digest entry still has the entry's size, times and inode."""
    try:
        stat = os.stat(key[0])
    except OSError:
        return False
    return key[1:] == (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def _read(stored: Path) -> dict[_Stat, str] | None:
    """The digests of one digest file; empty for a file of the old ``[path, size, mtime_ns,
    sha256]`` form, ``None`` for one that cannot be read or parsed."""
    try:
        entries = json.loads(stored.read_text(encoding="utf-8"))["files"]
        if entries and all(len(entry) == 4 for entry in entries):
            return {}
        found: dict[_Stat, str] = {}
        for path, size, mtime_ns, ctime_ns, inode, value in entries:
            key = (str(path), int(size), int(mtime_ns), int(ctime_ns), int(inode))
            found.setdefault(key, str(value))
        return found
    except (OSError, ValueError, KeyError, TypeError):
        return None
