"""Decoding camera photos: the estimator's whole embedding call (``FeatureCache.embed``,
bfloat16, channels-last, folded, 224 px, 2 torch threads, no disk) on 64 photo-sized JPEGs
(``benchmarks/practitioner_speed.py``'s ``photo_sized``: 4032 x 3024, about 2.6 MB each), with
(a) every file decoded fully in the calling thread (the path before 2026-12-01), (b) decoded at
a reduced scale (``decode_image(size=224)``) in the calling thread, (c) reduced, on 2 decoding
threads (today's path); three interleaved rounds. Also the decode-and-preprocess cost alone,
per image, one thread.

    PYTHONPATH=src:benchmarks .venv/bin/python studies/embedding-speed/decode.py
"""
import glob, os, tempfile, time
from pathlib import Path

import torch

from anyshot import embedding
from anyshot.backbones import build_backbone
from anyshot.data.images import load_file, open_image
from anyshot.embedding import ImageList
from anyshot.feature_cache import FeatureCache
from practitioner_speed import photo_sized

torch.set_num_threads(2)
net = build_backbone("efficientnet-lite0").eval()
pre = net.preprocessing.with_size(224)
folder = Path(tempfile.mkdtemp())
sources = sorted(glob.glob("/work/shared/data/mini-imagenet/images/*"))[1000:1064]
files = []
for i, source in enumerate(sources):
    files.append(folder / f"{i}.jpg")
    photo_sized(Path(source), files[-1], seed=i)
print(f"{len(files)} photos, {sum(os.path.getsize(f) for f in files) / len(files) / 1e6:.2f} MB each")


def full(path, preprocessing):
    return preprocessing(open_image(path))


for name, size in (("full", None), ("reduced", 224)):
    start = time.perf_counter()
    for f in files[:16]:
        pre(open_image(f, size))
    print(f"decode + preprocess, {name}: {(time.perf_counter() - start) / 16 * 1000:.0f} ms per image")
for round_ in range(3):
    for name, threads in (("full, 1 decoding thread", 1), ("reduced, 1 decoding thread", 1),
                          ("reduced, 2 decoding threads", 2)):
        embedding.load_file = full if name.startswith("full") else load_file
        original = embedding.embedding_batches
        cache = FeatureCache(None, dtype="bfloat16", channels_last=True, fold_batch_norm=True)
        embedding_batches = lambda *a, **k: original(*a, **{**k, "decode_threads": threads})
        import anyshot.feature_cache as fc
        fc.embedding_batches = embedding_batches
        start = time.perf_counter()
        cache.embed(net, ImageList([str(f) for f in files], pre), batch_size=32)
        took = time.perf_counter() - start
        fc.embedding_batches = original
        print(f"round {round_} {name:28s} {took:6.2f} s, {len(files) / took:5.1f} images/s", flush=True)
embedding.load_file = load_file
