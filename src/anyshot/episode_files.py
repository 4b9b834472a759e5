"""Episode files: a fixed list of episodes, saved once and re-run exactly, on any machine.

Format: JSON Lines (UTF-8). The first line is a header::

    {"format": "anyshot-episodes", "version": 1, "episodes": 600,
     "dataset": {"type": "Omniglot", "items": 33840, "classes": 1692,
                 "id_prefix": "/data/omniglot/", "fingerprint": "sha256 hex"},
     "header": {...free-form, e.g. the sampler's protocol and seed...}}

then one line per episode::

    {"index": 0, "classes": ["Alphabet/character01/rot000", ...],
     "support": [["images_evaluation.zip:.../0965_01.png@rot000", ...], ...],
     "query": [[...], ...]}

(open-set episodes add ``"outliers": [ids of query images of none of the classes]``)

``support[j]`` and ``query[j]`` list the image ids of way ``j`` (class ``classes[j]``). An image id
is the dataset's :meth:`~anyshot.data.ImageDataset.source` string with the longest common folder
prefix of all of the dataset's sources removed (``id_prefix``), so a file written on one machine
loads on another where the data lives elsewhere. ``fingerprint`` is the SHA-256 of every
``id <TAB> class name`` line, sorted: equal fingerprints mean the same images with the same labels.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyshot.episodes import EpisodeSpec
from anyshot.errors import EpisodeFileError
from anyshot.io import atomic_write_text

if TYPE_CHECKING:
    from anyshot.data.dataset import ImageDataset

__all__ = [
    "FORMAT",
    "VERSION",
    "ImageIds",
    "image_ids",
    "load_episodes",
    "read_episode_header",
    "save_episodes",
]

FORMAT = "anyshot-episodes"
VERSION = 1


@dataclass(frozen=True)
class ImageIds:
    """Stable ids of a dataset's items.

    Attributes:
        ids: item index -> id.
        prefix: the folder prefix removed from every source string.
        fingerprint: SHA-256 (hex) of the sorted ``id <TAB> class name`` lines.
    """

    ids: list[str]
    prefix: str
    fingerprint: str

    def index(self) -> dict[str, int]:
        """id -> item index."""
        return {image_id: i for i, image_id in enumerate(self.ids)}


def _common_folder(sources: list[str]) -> str:
    """The longest common prefix of ``sources`` that ends with a path separator ('' if none)."""
    if not sources:
        return ""
    low, high = min(sources), max(sources)  # the common prefix of all = that of these two
    length = next(
        (i for i, (a, b) in enumerate(zip(low, high, strict=False)) if a != b),
        min(len(low), len(high)),
    )
    prefix = low[:length]
    cut = max(prefix.rfind("/"), prefix.rfind(os.sep))
    return prefix[: cut + 1] if cut >= 0 else ""


def image_ids(dataset: ImageDataset) -> ImageIds:
    """The stable id of every item of ``dataset`` (see the module docstring).

    Raises:
        EpisodeFileError: two items share a source string (ids would be ambiguous).
    """
    sources = [dataset.source(i) for i in range(len(dataset))]
    prefix = _common_folder(sources)
    ids = [source[len(prefix) :] for source in sources]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i, n in Counter(ids).items() if n > 1)
        raise EpisodeFileError(
            f"{dataset!r} has two items with the source {duplicate!r}; episode files need "
            "one distinct source per item"
        )
    names = dataset.class_names
    lines = sorted(
        f"{image_id}\t{names[int(label)]}"
        for image_id, label in zip(ids, dataset.labels, strict=True)
    )
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    return ImageIds(ids, prefix, digest)


def save_episodes(
    path: str | os.PathLike[str],
    dataset: ImageDataset,
    specs: Iterable[EpisodeSpec],
    header: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``specs`` of ``dataset`` as an episode file, atomically.

    Args:
        path: the ``.jsonl`` file to write (folders are created).
        dataset: the dataset the specs index into.
        specs: the episodes, in order; line ``i + 1`` holds episode ``i``.
        header: JSON-able description stored in the header line (e.g. the sampler's config).

    Returns:
        The path written.
    """
    ids = image_ids(dataset)
    names = dataset.class_names
    lines = []
    for index, spec in enumerate(specs):
        entry = {
            "index": index,
            "classes": [names[c] for c in spec.classes],
            "support": [[ids.ids[i] for i in items] for items in spec.support],
            "query": [[ids.ids[i] for i in items] for items in spec.query],
        }
        if spec.outliers:
            entry["outliers"] = [ids.ids[i] for i in spec.outliers]
        lines.append(json.dumps(entry, ensure_ascii=False))
    head = {
        "format": FORMAT,
        "version": VERSION,
        "episodes": len(lines),
        "dataset": {
            "type": type(dataset).__name__,
            "items": len(dataset),
            "classes": dataset.num_classes,
            "id_prefix": ids.prefix,
            "fingerprint": ids.fingerprint,
        },
        "header": dict(header or {}),
    }
    text = "\n".join([json.dumps(head, ensure_ascii=False), *lines]) + "\n"
    return atomic_write_text(path, text)


def _parse_header(line: str, path: Path) -> dict[str, Any]:
    try:
        head = json.loads(line)
    except json.JSONDecodeError as error:
        raise EpisodeFileError(f"{str(path)!r} line 1 is not JSON: {error}") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise EpisodeFileError(
            f"{str(path)!r} is not an anyshot episode file: its first line must be the header "
            f'{{"format": "{FORMAT}", ...}} (write one with anyshot.episode_files.save_episodes '
            "or anyshot evaluate --save-episodes)"
        )
    if head.get("version") != VERSION:
        raise EpisodeFileError(
            f"{str(path)!r} has episode file version {head.get('version')!r}; this anyshot "
            f"reads version {VERSION}"
        )
    return head


def read_episode_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header line of an episode file (format, version, episodes, dataset, header).

    Raises:
        EpisodeFileError: not an episode file.
        FileNotFoundError: no such file.
    """
    file = Path(path)
    with open(file, encoding="utf-8") as handle:
        return _parse_header(handle.readline(), file)


def load_episodes(path: str | os.PathLike[str], dataset: ImageDataset) -> list[EpisodeSpec]:
    """Read an episode file and resolve its image ids and class names in ``dataset``.

    Every id must name an item of ``dataset`` whose class is the way's class, and no image may
    appear twice in one episode. A differing dataset fingerprint alone (e.g. the dataset gained
    images) only warns (:class:`UserWarning`) when every id still resolves.

    Returns:
        One :class:`EpisodeSpec` per episode line, in file order.

    Raises:
        EpisodeFileError: a malformed line, an unknown class or image id (the message names the
            line, the id and the dataset), an image filed under the wrong class, or a repeated
            image.
        FileNotFoundError: no such file.
    """
    file = Path(path)
    lines = file.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise EpisodeFileError(f"{str(file)!r} is empty; expected an anyshot episode file")
    head = _parse_header(lines[0], file)
    ids = image_ids(dataset)
    by_id = _IdResolver(dataset, ids)
    class_index = {name: k for k, name in enumerate(dataset.class_names)}
    written_for = head.get("dataset", {})
    mismatch = written_for.get("fingerprint") not in (None, ids.fingerprint)
    where = (
        f"the file was written for a {written_for.get('type', '?')} dataset of "
        f"{written_for.get('items', '?')} items under {written_for.get('id_prefix', '?')!r}; "
        f"this is {dataset!r} under {ids.prefix!r}"
    )
    specs: list[EpisodeSpec] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        specs.append(_parse_episode(line, number, file, by_id, class_index, dataset, where))
    expected = head.get("episodes")
    if isinstance(expected, int) and expected != len(specs):
        raise EpisodeFileError(
            f"{str(file)!r} announces {expected} episodes but holds {len(specs)}; the file is "
            "truncated or was edited"
        )
    if mismatch:
        warnings.warn(
            f"{str(file)!r}: the dataset's fingerprint differs from the one the file was written "
            f"for ({where}); every image id still resolved",
            UserWarning,
            stacklevel=2,
        )
    return specs


class _IdResolver:
    """File id -> item index: the dataset's own ids first, else ``root + id`` as a source.

    Ids are relative to the common folder of the sources of the dataset that *wrote* the file.
    A dataset with fewer or more items (e.g. a subset of the classes) can have another common
    folder; the root that makes the file's ids whole sources is then found from the first id
    that does not resolve directly, and used for every later one.
    """

    def __init__(self, dataset: ImageDataset, ids: ImageIds) -> None:
        self._own = ids.index()
        self._sources = [ids.prefix + i for i in ids.ids]
        self._by_source: dict[str, int] | None = None
        self._roots: list[str] | None = None

    def get(self, image_id: str) -> int | None:
        item = self._own.get(image_id)
        if item is not None:
            return item
        if self._by_source is None:
            self._by_source = {source: i for i, source in enumerate(self._sources)}
        if self._roots is None:
            self._roots = sorted(
                {
                    source[: len(source) - len(image_id)]
                    for source in self._sources
                    if source.endswith(image_id)
                    and (len(source) == len(image_id) or source[-len(image_id) - 1] in "/\\:")
                }
            )
        for root in self._roots:
            found = self._by_source.get(root + image_id)
            if found is not None:
                return found
        return None


def _parse_episode(
    line: str,
    number: int,
    file: Path,
    by_id: _IdResolver,
    class_index: dict[str, int],
    dataset: ImageDataset,
    where: str,
) -> EpisodeSpec:
    at = f"{str(file)!r} line {number}"
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as error:
        raise EpisodeFileError(f"{at} is not JSON: {error}") from None
    if not isinstance(entry, dict) or not {"classes", "support", "query"} <= set(entry):
        raise EpisodeFileError(f"{at}: expected an object with classes, support and query")
    classes, support, query = entry["classes"], entry["support"], entry["query"]
    if not (
        isinstance(classes, list)
        and isinstance(support, list)
        and isinstance(query, list)
        and len(classes) == len(support) == len(query)
        and len(classes) > 0
    ):
        raise EpisodeFileError(
            f"{at}: classes, support and query must be lists of the same, non-zero length"
        )
    indices: list[int] = []
    for name in classes:
        if name not in class_index:
            raise EpisodeFileError(
                f"{at}: class {name!r} is not a class of {dataset!r}; {where}. Load the "
                "dataset (root and split) the episodes were written for"
            )
        indices.append(class_index[name])
    seen: set[int] = set()

    def resolve(groups: list[Any], what: str) -> tuple[tuple[int, ...], ...]:
        resolved: list[tuple[int, ...]] = []
        for name, cls, group in zip(classes, indices, groups, strict=True):
            if not isinstance(group, list):
                raise EpisodeFileError(f"{at}: each {what} entry must be a list of image ids")
            items: list[int] = []
            for image_id in group:
                item = by_id.get(image_id) if isinstance(image_id, str) else None
                if item is None:
                    raise EpisodeFileError(
                        f"{at}: image id {image_id!r} is not in {dataset!r}; {where}. Load the "
                        "dataset (root and split) the episodes were written for"
                    )
                if int(dataset.labels[item]) != cls:
                    actual = dataset.class_names[int(dataset.labels[item])]
                    raise EpisodeFileError(
                        f"{at}: image {image_id!r} is filed under class {name!r} but the "
                        f"dataset labels it {actual!r}"
                    )
                if item in seen:
                    raise EpisodeFileError(f"{at}: image {image_id!r} appears twice")
                seen.add(item)
                items.append(item)
            resolved.append(tuple(items))
        return tuple(resolved)

    support_items = resolve(support, "support")
    if any(len(items) == 0 for items in support_items):
        raise EpisodeFileError(f"{at}: every class needs at least one support image")
    query_items = resolve(query, "query")
    outliers = _outliers(entry.get("outliers", []), at, by_id, set(indices), seen, dataset, where)
    return EpisodeSpec(tuple(indices), support_items, query_items, outliers)


def _outliers(
    ids: Any,
    at: str,
    by_id: _IdResolver,
    classes: set[int],
    seen: set[int],
    dataset: ImageDataset,
    where: str,
) -> tuple[int, ...]:
    """The items of an episode line's ``outliers`` ids: each in ``dataset``, of none of the
    episode's ``classes``, and not used elsewhere in the episode (``seen``)."""
    if not isinstance(ids, list):
        raise EpisodeFileError(f"{at}: outliers must be a list of image ids")
    items: list[int] = []
    for image_id in ids:
        item = by_id.get(image_id) if isinstance(image_id, str) else None
        if item is None:
            raise EpisodeFileError(
                f"{at}: outlier image id {image_id!r} is not in {dataset!r}; {where}"
            )
        if int(dataset.labels[item]) in classes:
            raise EpisodeFileError(
                f"{at}: outlier image {image_id!r} is of class "
                f"{dataset.class_names[int(dataset.labels[item])]!r}, one of the episode's "
                "classes; an outlier must be of none of them"
            )
        if item in seen:
            raise EpisodeFileError(f"{at}: image {image_id!r} appears twice")
        seen.add(item)
        items.append(item)
    return tuple(items)
