"""The remembered file digests: read once, kept across processes, and merged before the folder
grows a file per run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from anyshot.file_digests import MERGE_AT, FileDigests


def _files(tmp_path: Path, count: int) -> list[str]:
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i in range(count):
        path = folder / f"{i}.bin"
        path.write_bytes(f"content {i}".encode())
        paths.append(str(path))
    return paths


def test_digests_are_remembered_by_a_later_process(tmp_path: Path) -> None:
    (path,) = _files(tmp_path, 1)
    first = FileDigests(tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    expected = hashlib.sha256(b"content 0").hexdigest()
    assert first.digest(path) == expected and first.hashed == 1
    first.save()
    later = FileDigests(tmp_path / "cache")
    assert later.digest(path) == expected and later.hashed == 0


def test_many_runs_leave_one_merged_file_and_old_forms_go(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    paths = _files(tmp_path, MERGE_AT + 2)
    old = cache / "digests-00000000000000000001-old.json"
    old.write_text(json.dumps({"files": [[paths[0], 9, 1, "ab" * 32]]}))
    foreign = cache / "digests-00000000000000000002-bad.json"
    foreign.write_text("not json")
    for path in paths:  # one run per file: a digest file each
        run = FileDigests(cache)
        run.digest(path)
        run.save()
    stored = sorted(cache.glob("digests-*.json"))
    assert len(stored) < MERGE_AT and not old.exists() and not foreign.exists()
    later = FileDigests(cache)
    assert [later.digest(p) for p in paths] == [
        hashlib.sha256(f"content {i}".encode()).hexdigest() for i in range(len(paths))
    ]
    assert later.hashed == 0  # every digest survived the merge


def test_a_merge_drops_the_entries_of_files_that_are_gone(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    paths = _files(tmp_path, MERGE_AT + 1)
    for path in paths:
        run = FileDigests(cache)
        run.digest(path)
        run.save()
        if path == paths[0]:
            Path(path).unlink()  # gone before the merge
    entries = [
        row for stored in cache.glob("digests-*.json")
        for row in json.loads(stored.read_text())["files"]
    ]  # fmt: skip
    assert sorted(row[0] for row in entries) == sorted(paths[1:])
