"""Peak memory of embedding N images of 224 px (mini-ImageNet val and test files, the query
folder of ``benchmarks/classify_many_queries.py``) with and without returning each batch's freed
memory to the system (``anyshot.heap.release_free_memory``): one process per run.

    PYTHONPATH=src:benchmarks .venv/bin/python studies/embedding-speed/heap.py 3000 release
    PYTHONPATH=src:benchmarks .venv/bin/python studies/embedding-speed/heap.py 3000 keep
"""

import resource
import sys
import tempfile
import time
from pathlib import Path

import classify_many_queries
from anyshot import embedding
from anyshot.backbones import build_backbone
from anyshot.embedding import as_images
from anyshot.feature_cache import FeatureCache

count, mode = int(sys.argv[1]), sys.argv[2]
if mode == "keep":
    embedding.release_free_memory = lambda: True  # type: ignore[assignment]
with tempfile.TemporaryDirectory() as work:
    root = Path(work)
    classify_many_queries.build(Path("../shared/data/mini-imagenet"), root, 5, 5, count)
    network = build_backbone("efficientnet-lite0").eval()
    paths = sorted(str(p) for p in (root / "query").iterdir())
    cache = FeatureCache(None, dtype="bfloat16", fold_batch_norm=True)
    start = time.perf_counter()
    cache.embed(network, as_images(paths, network.preprocessing), batch_size=32)
    seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{count} images, {mode}: peak {peak:.0f} MB, {count / seconds:.1f} images/s")
