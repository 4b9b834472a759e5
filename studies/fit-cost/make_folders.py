"""Class folders of symbolic links for the `anyshot fit` cost (issue 16): the first 20
mini-ImageNet test classes (sorted wnids), their first N images each, N = 5 and 100.

    python make_folders.py ../../../shared/data/mini-imagenet /tmp/fit20
    cd /tmp/fit20 && XDG_CACHE_HOME=/tmp/fit20/cache /usr/bin/time -v \\
        anyshot fit --support s100 --output m100.pt        # and s5 with its own empty cache
"""

import csv
import sys
from pathlib import Path

root, out = Path(sys.argv[1]), Path(sys.argv[2])
by_class: dict[str, list[str]] = {}
with open(root / "test.csv") as handle:
    for row in csv.DictReader(handle):
        by_class.setdefault(row["label"], []).append(row["filename"])
for shots in (5, 100):
    for wnid in sorted(by_class)[:20]:
        folder = out / f"s{shots}" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for name in sorted(by_class[wnid])[:shots]:
            if not (folder / name).exists():
                (folder / name).symlink_to(root / "images" / name)
