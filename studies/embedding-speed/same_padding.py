"""Same padding by the convolution itself (``SamePaddingConv2d``) against the package's
convolution (``Conv2dDynamicSamePadding``: every padded input copied by ``F.pad`` first):
EfficientNet-Lite0 images/s (3 interleaved rounds of a 64-image batch of random inputs, after a
warm-up batch) and the largest relative difference of the features (``|a - b| / |b|`` per
image; 0: identical), at 84 and 224 px, float32 and bfloat16 (channels-last, batch-norms
folded, as ``FeatureCache`` runs it), and float32 contiguous (as training runs it); for
scale, the package's bfloat16 features against its float32 ones.

    PYTHONPATH=src .venv/bin/python studies/embedding-speed/same_padding.py [THREADS]
"""

import copy
import sys
import time

import torch
from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding

from anyshot.backbones import build_backbone
from anyshot.backbones.efficientnet_lite import SamePaddingConv2d
from anyshot.embedding import inference_network, model_input
from anyshot.heap import reused_heap

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
network = build_backbone("efficientnet-lite0").eval()
package = copy.deepcopy(network)
for module in package.modules():
    if type(module) is SamePaddingConv2d:
        module.__class__ = Conv2dDynamicSamePadding
modes = [("bfloat16", True, True), ("float32", True, True), ("float32", False, False)]


def largest_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm(dim=1) / b.norm(dim=1)).max())


for size in (224, 84):
    reference: dict[str, torch.Tensor] = {}
    images = torch.rand(64, 3, size, size) * 2 - 1
    for dtype, channels_last, fold in modes:
        inputs = model_input(images, torch.device("cpu"), dtype=dtype, channels_last=channels_last)
        nets = {
            name: inference_network(net, torch.device("cpu"), dtype=dtype, private=True,
                                    channels_last=channels_last, fold=fold).eval()
            for name, net in (("package", package), ("own padding", network))
        }  # fmt: skip
        seconds: dict[str, list[float]] = {name: [] for name in nets}
        outputs: dict[str, torch.Tensor] = {}
        with torch.inference_mode(), reused_heap():
            for net in nets.values():
                net(inputs[:8])
            for _ in range(3):
                for name, net in nets.items():
                    start = time.perf_counter()
                    outputs[name] = net(inputs).float()
                    seconds[name].append(time.perf_counter() - start)
        reference.setdefault(dtype, outputs["package"])
        difference = largest_difference(outputs["own padding"], outputs["package"])
        rates = {name: [64 / s for s in times] for name, times in seconds.items()}
        best = {name: max(r) for name, r in rates.items()}
        print(f"{size} px {dtype} {'channels-last' if channels_last else 'contiguous'}"
              f"{' folded' if fold else ''}: "
              + "; ".join(f"{name} {' / '.join(f'{r:.1f}' for r in rate)}"
                          for name, rate in rates.items())
              + f" images/s; best ratio {best['own padding'] / best['package']:.2f}x;"
              f" largest relative difference {difference:.1e}", flush=True)  # fmt: skip
    scale = largest_difference(reference["bfloat16"], reference["float32"])
    print(f"{size} px: the package's bfloat16 features against its float32 ones: {scale:.1e}")
