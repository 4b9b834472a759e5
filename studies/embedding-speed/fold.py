"""Batch-norm folding (``anyshot.embedding.fold_batch_norm``): EfficientNet-Lite0 images/s at
224 px, float32 and bfloat16, channels-last, folded or not, on random inputs (3 interleaved
rounds of a 64-image batch), and the features' smallest cosine to the float32 unfolded ones.

    PYTHONPATH=src .venv/bin/python studies/embedding-speed/fold.py [THREADS]
"""

import sys
import time

import torch

from anyshot.backbones import build_backbone
from anyshot.embedding import inference_network, model_input

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
network = build_backbone("efficientnet-lite0").eval()
images = torch.randn(64, 3, 224, 224)
variants = {
    f"{dtype}{'-folded' if fold else ''}": (
        inference_network(network, torch.device("cpu"), dtype=dtype, channels_last=True,
                          private=True, fold=fold).eval(),
        model_input(images, torch.device("cpu"), dtype=dtype, channels_last=True),
    )
    for dtype in ("float32", "bfloat16")
    for fold in (False, True)
}
rates: dict[str, list[float]] = {name: [] for name in variants}
outputs: dict[str, torch.Tensor] = {}
with torch.inference_mode():
    for model, batch in variants.values():
        model(batch[:4])
    for _ in range(3):
        for name, (model, batch) in variants.items():
            start = time.perf_counter()
            outputs[name] = model(batch).float()
            rates[name].append(len(batch) / (time.perf_counter() - start))
for name, values in rates.items():
    cosine = torch.nn.functional.cosine_similarity(outputs[name], outputs["float32"]).min()
    print(f"{name:17s} images/s {[round(v, 1) for v in values]}  min cosine {float(cosine):.6f}")
