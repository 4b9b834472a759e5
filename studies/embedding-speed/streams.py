"""Two embedding streams of one thread each, against one stream of two threads: EfficientNet-
Lite0 images/s at 224 px, bfloat16, channels-last, folded, traced and frozen (as the feature
cache runs it), on random inputs; 3 interleaved rounds of 4 batches of 32 images.

    PYTHONPATH=src .venv/bin/python studies/embedding-speed/streams.py
"""

import threading
import time

import torch

from anyshot.backbones import build_backbone
from anyshot.embedding import inference_network, model_input
from anyshot.feature_cache import _traced_and_frozen

network = build_backbone("efficientnet-lite0").eval()
model = inference_network(network, torch.device("cpu"), dtype="bfloat16", channels_last=True,
                          private=True, fold=True).eval()
batches = [model_input(torch.randn(32, 3, 224, 224), torch.device("cpu"), dtype="bfloat16",
                       channels_last=True) for _ in range(4)]
model = _traced_and_frozen(model, batches[0])


def run(chunk: list[torch.Tensor]) -> None:
    with torch.inference_mode():
        for batch in chunk:
            model(batch)


def serial(threads: int) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    run(batches)
    return 128 / (time.perf_counter() - start)


def streams(count: int) -> float:
    torch.set_num_threads(1)
    workers = [threading.Thread(target=run, args=(batches[i::count],)) for i in range(count)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return 128 / (time.perf_counter() - start)


run(batches[:1])
rates: dict[str, list[float]] = {"1 stream x 2 threads": [], "1 stream x 1 thread": [],
                                 "2 streams x 1 thread": []}
for _ in range(3):
    rates["1 stream x 2 threads"].append(serial(2))
    rates["1 stream x 1 thread"].append(serial(1))
    rates["2 streams x 1 thread"].append(streams(2))
for name, values in rates.items():
    print(f"{name:22s} images/s {[round(v, 1) for v in values]}")
