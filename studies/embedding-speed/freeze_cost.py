"""The estimator's embedding (bfloat16, channels-last, folded) eager against a frozen trace
(``FeatureCache(freeze=True)``, traced per call) on 125 and 500 mini-ImageNet images at 224 px,
2 threads, the whole ``FeatureCache.embed`` call (decoding included), twice each, interleaved.

    PYTHONPATH=src .venv/bin/python studies/embedding-speed/freeze_cost.py
"""
import time, glob, torch
from anyshot.backbones import build_backbone
from anyshot.feature_cache import FeatureCache
from anyshot.embedding import ImageList
from anyshot.data.images import Preprocessing
torch.set_num_threads(2)
net = build_backbone("efficientnet-lite0").eval()
files = sorted(glob.glob('/work/shared/data/mini-imagenet/images/*'))
pre = net.preprocessing.with_size(224) if hasattr(net,'preprocessing') else Preprocessing(224)
for n in (125, 500):
    for freeze in (False, True, False, True):
        cache = FeatureCache(None, dtype="bfloat16", channels_last=True, fold_batch_norm=True, freeze=freeze)
        imgs = ImageList(files[1000:1000+n], pre)
        t=time.perf_counter(); cache.embed(net, imgs, batch_size=32); dt=time.perf_counter()-t
        print(n, 'freeze' if freeze else 'eager ', '%.2f s, %.1f img/s'%(dt, n/dt), flush=True)
