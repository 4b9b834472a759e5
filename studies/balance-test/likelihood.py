"""Model selection between the two runs of runs.py (val only): the queries mixture log-likelihood
of the first run (its logits times scale as vMF log-densities, EM proportions) against the
second (uniform proportions), the first penalised by pen * (K - 1) / 2 * log Q (BIC at pen 1);
and the first run alone, uniform against EM proportions (a likelihood-ratio test)."""
import math

import torch

r = torch.load('/tmp/balance-runs.pt')
def em(logp, steps=50):
    E, Q, K = logp.shape
    pi = torch.full((E, K), 1.0 / K, dtype=torch.float64)
    for _ in range(steps):
        w = (pi.log()[:, None] + logp).softmax(-1)
        pi = w.mean(1).clamp_min(1e-12)
    return pi
def stats(x, scale):
    l1 = x['logits_first'].double() * scale
    l2 = x['logits_second'].double() * scale
    E, Q, K = l1.shape
    pi = em(l1)
    ll1 = torch.logsumexp(pi.log()[:, None] + l1, -1).sum(-1)
    ll1u = torch.logsumexp(l1 - math.log(K), -1).sum(-1)
    ll2 = torch.logsumexp(l2 - math.log(K), -1).sum(-1)
    return ll1, ll1u, ll2, (K - 1) / 2 * math.log(Q)
cells = list(r)
print(' ' * 24 + ' '.join(c.replace('mini-','m').replace('omni-','o').replace('dirichlet','d').replace('balanced','b').replace('manyway-','')[:8].rjust(8) for c in cells))
def show(name, rule):
    accs = [100 * float(torch.where(rule(x), x['acc_second'], x['acc_first']).mean()) for x in r.values()]
    print(f'{name:24s}' + ' '.join(f'{a:8.1f}' for a in accs))
show('today', lambda x: x['test'] > 0)
show('always', lambda x: x['test'] > -1)
for scale in (1.0, 0.5):
    for m in (0.0, 0.5, 1.0, 2.0):
        def rule(x, scale=scale, m=m):
            ll1, ll1u, ll2, pen = stats(x, scale)
            return (ll2 - ll1) > -m * pen
        show(f'vmf s{scale} pen{m}', rule)
    for m in (0.0, 1.0):
        def rule2(x, scale=scale, m=m):
            ll1, ll1u, ll2, pen = stats(x, scale)
            return (ll1u - ll1) > -m * pen   # first-run: uniform vs ML proportions (LR test form)
        show(f'lr1 s{scale} pen{m}', rule2)
