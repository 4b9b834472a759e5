"""Per-episode signals that might tell the first head from the Tsallis head (VALIDATION classes
only): per cell, both heads' accuracy, their agreement, the class means' leave-one-out accuracy
on the support (2+ shots) and the mean cosine between class means; writes them per episode.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/present-five/signals.py \
        --split val --cells "mini-present-16w5s-k3,omni-present-20w5s-k3" \
        --episodes-dir /tmp/grid-episodes --output OUT.json
"""
import sys, json, torch, numpy as np
import realistic_grid as rg
from anyshot.evaluation.cached import episode_tensors
from anyshot.feature_cache import FeatureCache
from anyshot.methods.features import EpisodeRows
from anyshot.methods.head import _fit, predicted_classes
from anyshot.methods.presets import RECOMMENDED
from anyshot.methods.cosine import class_means, unit_embeddings
from harness.episodes import embed_episodes

args = rg.parse_args(); torch.set_num_threads(args.threads)
datasets = {n: rg.dataset_split(args.data_root, d.dataset, args.split) for n, d in rg.DOMAINS.items()}
runnable, _ = rg.plan(args, datasets)
tr = RECOMMENDED.head_training
out = {}
for cell, (specs, _, _) in runnable:
    domain = rg.DOMAINS[cell.domain]
    feats = embed_episodes(FeatureCache(args.cache_dir, channels_last=domain.channels_last), domain.network(), datasets[cell.domain], iter(specs)).features
    s, t, q, qt = episode_tensors(feats, specs); K = len(specs[0].classes)
    rows = EpisodeRows(s.float(), t, q.float(), K); shots = s.shape[1] / K
    f = _fit(tr, rows).query_logits; ts = _fit(tr.tsallis(shots), rows).query_logits
    af = (f.argmax(-1) == qt).double().mean(-1) * 100; at = (ts.argmax(-1) == qt).double().mean(-1) * 100
    agree = (f.argmax(-1) == ts.argmax(-1)).double().mean(-1)
    # class-mean leave-one-out accuracy on the support (shots >= 2)
    u = unit_embeddings(s.float(), relu=True); oh = torch.nn.functional.one_hot(t, K).float()
    sums = oh.transpose(1, 2) @ u; counts = oh.sum(1)
    own = sums.gather(1, t.unsqueeze(-1).expand(-1, -1, u.shape[-1]))
    loo_means = sums.unsqueeze(1).expand(-1, u.shape[1], -1, -1).clone()
    idx = t.unsqueeze(-1).unsqueeze(-1).expand(-1, -1, 1, u.shape[-1])
    loo_means.scatter_(2, idx, (own - u).unsqueeze(2))
    loo = (torch.nn.functional.normalize(loo_means, dim=-1) @ u.unsqueeze(-1)).squeeze(-1).argmax(-1)
    loo_acc = (loo == t).double().mean(-1) * 100 if shots >= 2 else torch.full((len(specs),), float('nan'))
    sim = torch.nn.functional.normalize(class_means(s.float(), t, K, relu=True), dim=-1)
    cs = (sim @ sim.transpose(1, 2)); msim = (cs.sum((1, 2)) - K) / (K * (K - 1))
    print(f"{cell.name:24s} first {af.mean():5.1f} tsallis {at.mean():5.1f} diff {(at-af).mean():+5.1f} | agree {agree.mean():.2f} loo {loo_acc.mean():5.1f} sim {msim.mean():.2f} | kf {predicted_classes(f).mean():.1f} kt {predicted_classes(ts).mean():.1f}", flush=True)
    out[cell.name] = {"af": af.tolist(), "at": at.tolist(), "agree": agree.tolist(), "loo": loo_acc.tolist(), "sim": msim.tolist()}
    json.dump(out, open(args.output, "w"))
