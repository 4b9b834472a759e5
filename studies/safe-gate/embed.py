"""Embed the VALIDATION classes once (shared FeatureCache /tmp/anyshot-features) and save
per-dataset feature tensors: feats_omni.pt (Omniglot val, all 688 classes x 20, 84 px,
channels_last=False as honest_evaluation.py) and feats_mini.pt (mini-ImageNet val, first
POOL images of each of the 16 classes, 224 px, default FeatureCache as mini_imagenet_table.py)."""
import os
import sys, time
import numpy as np, torch
torch.set_num_threads(1)
from anyshot.backbones import load_backbone, build_backbone
from anyshot.data import load_dataset
from anyshot.feature_cache import FeatureCache
from anyshot.evaluation.cached import embed_items
import os as _os
OUT = _os.environ.get("ANYSHOT_STUDY_OUT", "out")  # where features and predictions go

which = sys.argv[1]
POOL = int(sys.argv[2]) if len(sys.argv) > 2 else 200
t = time.time()
if which == "omni":
    ds = load_dataset("omniglot", "../../../shared/data/omniglot", "val")
    labels = np.asarray(ds.labels)
    items = list(range(len(labels)))
    bb = load_backbone("efficientnet-lite0", image_size=84)
    cache = FeatureCache(os.environ.get("ANYSHOT_STUDY_CACHE", "/tmp/anyshot-features"), channels_last=False)
else:
    ds = load_dataset("mini-imagenet", "../../../shared/data/mini-imagenet", "val")
    labels = np.asarray(ds.labels)
    items = sorted(int(i) for c in np.unique(labels) for i in np.flatnonzero(labels == c)[:POOL])
    bb = build_backbone("efficientnet-lite0", image_size=224)
    cache = FeatureCache(os.environ.get("ANYSHOT_STUDY_CACHE", "/tmp/anyshot-features"))
print(which, len(items), "items", len(np.unique(labels)), "classes", flush=True)
f = embed_items(cache, bb, ds, items, show_progress=False)
torch.save({"items": items, "labels": torch.as_tensor(labels[items]), "features": f.features.float()},
           f"{OUT}/feats_{which}.pt")
print(which, "done", f.features.shape, time.time() - t, flush=True)
