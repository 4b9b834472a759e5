"""Regenerate ``src/anyshot/resources/omniglot-sample/`` from the full official Omniglot zip.

The sample is a small, real slice of Omniglot for demos and tests on machines without the full
data: the first ``--per-alphabet`` characters (sorted by name) of every alphabet of the Vinyals
**test** split, all 20 drawings each, copied byte-for-byte from ``images_evaluation.zip`` into a
zip with the same layout, plus ``splits/vinyals/test.txt`` listing those characters at their
four rotations (lines in the order of the full split file).

Usage::

    python scripts/make_omniglot_sample.py [--source ../shared/data/omniglot] [--per-alphabet 3]

The output is deterministic (fixed member order and timestamps copied from the source zip).
"""

from __future__ import annotations

import argparse
import zipfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "omniglot"
DEFAULT_DEST = REPO / "src" / "anyshot" / "resources" / "omniglot-sample"
ZIP_STEM = "images_evaluation"

README = """\
# Omniglot sample

A small real subset of Omniglot, shipped so that anyshot's demo and tests run without the full
data set: the first {per_alphabet} characters (sorted by name) of each of the {alphabets}
alphabets of the Vinyals et al. (2016) **test** split, all 20 drawings of each ({characters}
characters, {images} images, 105x105 1-bit PNG), in the official layout:

- `images_evaluation.zip` — members `images_evaluation/<Alphabet>/characterNN/XXXX_YY.png`, the PNG
  files copied byte-for-byte from the official `images_evaluation.zip`;
- `splits/vinyals/test.txt` — one `Alphabet/characterNN/rotDDD` line per class (each character at
  0/90/180/270 degrees: {classes} classes), in the order of the full split file.

Load it with `anyshot.data.Omniglot(anyshot.data.omniglot.sample_root(), "test")`.
Regenerate it with `python scripts/make_omniglot_sample.py` (needs the full Omniglot zips).

Source: Brenden M. Lake, Ruslan Salakhutdinov, Joshua B. Tenenbaum, "Human-level concept learning
through probabilistic program induction", Science 350(6266), 2015;
https://github.com/brendenlake/omniglot. Split: Vinyals et al., "Matching Networks for One Shot
Learning", NeurIPS 2016, as distributed with Prototypical Networks (Snell et al., 2017).

Licence: MIT (the Omniglot data set and the split files).

The MIT License (MIT)

Copyright (c) 2015 Brenden Lake

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def choose_characters(split_lines: list[str], per_alphabet: int) -> list[str]:
    """The first ``per_alphabet`` characters (sorted) of each alphabet in the split, sorted."""
    by_alphabet: dict[str, set[str]] = defaultdict(set)
    for line in split_lines:
        character = line.rpartition("/")[0]
        by_alphabet[character.split("/")[0]].add(character)
    chosen: list[str] = []
    for alphabet in sorted(by_alphabet):
        chosen.extend(sorted(by_alphabet[alphabet])[:per_alphabet])
    return chosen


def copy_member(source: zipfile.ZipFile, target: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Copy one member (its bytes, timestamp, compression and attributes) into ``target``."""
    clone = zipfile.ZipInfo(info.filename, date_time=info.date_time)
    clone.compress_type = info.compress_type
    clone.external_attr = info.external_attr
    clone.create_system = info.create_system
    target.writestr(clone, b"" if info.is_dir() else source.read(info))


def make_sample(source_root: Path, dest: Path, per_alphabet: int) -> None:
    """Write the sample zip, split file and README under ``dest``."""
    split_lines = [
        line.strip()
        for line in (source_root / "splits" / "vinyals" / "test.txt").read_text().splitlines()
        if line.strip()
    ]
    characters = choose_characters(split_lines, per_alphabet)
    wanted = set(characters)
    dirs = {f"{ZIP_STEM}/"}
    for character in characters:
        dirs.add(f"{ZIP_STEM}/{character.split('/')[0]}/")
        dirs.add(f"{ZIP_STEM}/{character}/")

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "splits" / "vinyals").mkdir(parents=True, exist_ok=True)
    images = 0
    with zipfile.ZipFile(source_root / f"{ZIP_STEM}.zip") as source:
        infos = sorted(source.infolist(), key=lambda info: info.filename)
        selected = []
        for info in infos:
            parts = info.filename.split("/")
            if info.filename in dirs or (
                len(parts) == 4 and f"{parts[1]}/{parts[2]}" in wanted and parts[3]
            ):
                selected.append(info)
        temporary = dest / f"{ZIP_STEM}.zip.tmp"
        with zipfile.ZipFile(temporary, "w") as target:
            for info in selected:
                copy_member(source, target, info)
                images += not info.is_dir()
        temporary.replace(dest / f"{ZIP_STEM}.zip")

    lines = [line for line in split_lines if line.rpartition("/")[0] in wanted]
    (dest / "splits" / "vinyals" / "test.txt").write_text("\n".join(lines) + "\n")
    alphabets = len({character.split("/")[0] for character in characters})
    (dest / "README.md").write_text(
        README.format(
            per_alphabet=per_alphabet,
            alphabets=alphabets,
            characters=len(characters),
            images=images,
            classes=len(lines),
        )
    )
    print(
        f"{len(characters)} characters from {alphabets} alphabets, {images} images, "
        f"{len(lines)} classes -> {dest}"
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source",
        type=Path,
        default=DEFAULT_SOURCE,
        help="folder with images_evaluation.zip and splits/vinyals/test.txt",
    )
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="output folder")
    parser.add_argument(
        "--per-alphabet",
        type=int,
        default=3,
        help="characters taken from each test alphabet (default 3)",
    )
    arguments = parser.parse_args()
    make_sample(arguments.source, arguments.dest, arguments.per_alphabet)


if __name__ == "__main__":
    main()
