"""The embedding loop's heap: memory returned to the system after every batch (the code before
``anyshot.heap.reused_heap``) against the heap reused for the whole loop (today's), measured in
turn on the same folder: ``anyshot classify --no-cache`` of 5 mini-ImageNet val classes x 5
images and ``--queries`` query images (the folder of ``benchmarks/classify_many_queries.py``),
each run a fresh process; wall time, minor page faults and peak resident memory.

    .venv/bin/python studies/embedding-speed/reused_heap.py --queries 4000
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from classify_many_queries import build  # noqa: E402  (a benchmark beside this study)

RUN = """
import contextlib, json, resource, sys, time
import anyshot.embedding as embedding
from anyshot.heap import release_free_memory
if sys.argv[1] == "per-batch":  # before: free pages returned after every batch
    embedding.reused_heap = contextlib.nullcontext
    plain = embedding.model_input
    def trimmed(*args, **kwargs):
        release_free_memory()
        return plain(*args, **kwargs)
    embedding.model_input = trimmed
from anyshot.cli import main
start = time.perf_counter()
main(["classify", "--support", sys.argv[2] + "/support", "--query", sys.argv[2] + "/query",
      "--output", sys.argv[2] + "/out.csv", "--no-cache", "--quiet"])
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - start, "minor_faults": usage.ru_minflt,
                  "peak_mib": usage.ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=4000)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reused-heap-") as work:
        build(args.data_root / "mini-imagenet", Path(work), 5, 5, args.queries)
        for mode in ("per-batch", "reused"):
            done = subprocess.run([sys.executable, "-c", RUN, mode, work], check=True,
                                  capture_output=True, text=True)
            print(mode, done.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
