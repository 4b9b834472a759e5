"""Other runtimes for the embedding network (issue 15's 5x at idle): images/s of EfficientNet-Lite0
at 224 px, batch 64, random inputs, batch-norms folded, after one warm-up batch:

* ``eager``: today's path (bfloat16, channels-last, ``torch.inference_mode``);
* ``compile``: the same module through ``torch.compile`` (inductor; a C compiler must be
  installed), with the compile time of the first call;
* ``ort``: ONNX Runtime 1.32 (float32; its CPU provider has no bfloat16 convolutions), from a
  ``torch.onnx.export`` of the float32 module, with the export time.

Not part of the product (``onnxruntime``, ``onnx`` and ``onnxscript`` are not dependencies):
``pip install --target DIR onnxruntime onnx onnxscript`` and pass ``--ort-path DIR``.

    PYTHONPATH=src python studies/embedding-speed/runtimes.py --threads 2 --runtimes eager compile ort
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from anyshot.backbones import build_backbone
from anyshot.embedding import inference_network, model_input

BATCH = 64


def images_per_second(run: Callable[[], object], repeats: int) -> float:
    """Images/s of ``run`` (one batch per call) over ``repeats`` calls after a warm-up call."""
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return BATCH * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--runtimes", nargs="+", default=["eager", "compile", "ort"])
    parser.add_argument("--ort-path", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    network = build_backbone("efficientnet-lite0").eval()
    cpu = torch.device("cpu")
    fast = inference_network(network, cpu, dtype="bfloat16", channels_last=True, fold=True).eval()
    images = torch.randn(BATCH, 3, 224, 224)
    x = model_input(images, cpu, dtype="bfloat16", channels_last=True)
    with torch.inference_mode():
        reference = fast(x).float()
    for name in args.runtimes:
        if name == "eager":
            with torch.inference_mode():
                rate = images_per_second(lambda: fast(x), args.repeats)
            print(f"eager bfloat16 channels-last: {rate:.1f} images/s", flush=True)
        elif name == "compile":
            compiled = torch.compile(fast)
            start = time.perf_counter()
            with torch.inference_mode():
                out = compiled(x).float()
                took = time.perf_counter() - start
                rate = images_per_second(lambda: compiled(x), args.repeats)
            gap = float((out - reference).abs().max())
            print(f"torch.compile: {rate:.1f} images/s, first call {took:.1f} s, max |diff| {gap:.3g}", flush=True)
        elif name == "ort":
            if args.ort_path is not None:
                sys.path.append(str(args.ort_path))
            import onnxruntime as ort  # noqa: PLC0415

            plain = inference_network(network, cpu, dtype="float32", fold=True, private=True).eval()
            path = Path(tempfile.mkdtemp()) / "network.onnx"
            start = time.perf_counter()
            torch.onnx.export(plain, (images,), str(path), dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "batch"}})
            took = time.perf_counter() - start
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feed = {"x": images.numpy()}
            rate = images_per_second(lambda: session.run(None, feed), args.repeats)
            out = torch.from_numpy(session.run(None, feed)[0])
            gap = float((out - reference).abs().max())
            print(f"onnxruntime float32: {rate:.1f} images/s, export {took:.1f} s, max |diff| to bfloat16 {gap:.3g}", flush=True)
        else:
            raise SystemExit(f"unknown runtime {name!r}")


if __name__ == "__main__":
    main()
