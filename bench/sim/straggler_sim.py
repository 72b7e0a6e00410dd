#!/usr/bin/env python3
"""What asynchrony could buy the straggler benchmark at best: a simulation, not spinmesh.

`python3 bench/sim/straggler_sim.py [--seeds=N] [--lag=L]` (needs numpy; not part of CI).

The model of `npm run bench -- straggler`: a centred 16-16 RBM on bars-and-stripes 4x4 (batch =
the 30 patterns, CD-10, momentum 0.5, learning rate 0.1 decaying linearly to 0 over 2,000 steps),
split like the cluster's 2 shards (A: visible 0-7 and hidden 0-7; B: the rest). Time is counted in
ticks, one tick being a whole step of a full-speed shard; shard B runs at half speed. It reports
the ticks until the exact log-likelihood reaches -4.0 nats (checked every 10 ticks) for:

- lockstep: every step waits for the slow shard (a step per 2 ticks);
- no straggler: both at full speed (a step per tick): the floor;
- async: the most an asynchronous design could do, free of every cost spinmesh pays. Each shard
  draws its chains on its own clock, one Gibbs sweep at a time, with the peer's newest published
  spins of the same chain (of whatever step the peer is in), updates only the parameters it owns
  (its hidden units' weight columns, its biases) from its own view, and its peer's replica of them
  is refreshed every `lag` ticks for free (weights on the wire, at no cost in time). Its
  learning rates decay with each shard's own steps, or with `--time-schedule` with the time (over
  the slow shard's 2,000 steps), which keeps the fast shard's rate up for longer.

spinmesh's own design (a shard applies update t only with its peers' spins of step t, so that the
two copies of a cross-shard weight tile stay identical without weight traffic) learns at the slow
shard's rate whatever the staleness: the lockstep count, less the slow shard's waiting.
"""
import argparse
import itertools

import numpy as np

H = 16
STEPS, K, LR, MOMENTUM, TARGET = 2000, 10, 0.1, 0.5, -4.0
OWN_V = [np.arange(0, 8), np.arange(8, 16)]
OWN_H = [np.arange(0, 8), np.arange(8, 16)]


def bars_and_stripes(n=4):
    pats = set()
    for bits in itertools.product([0, 1], repeat=n):
        r = np.repeat(np.array(bits)[:, None], n, 1)
        pats.add(tuple(r.ravel()))
        pats.add(tuple(r.T.ravel()))
    return np.array(sorted(pats), dtype=float)


X = bars_and_stripes()
N, V = X.shape
MU, LAM = X.mean(0), 0.5  # centring offsets (visible: the data mean; hidden: fixed at 0.5)
ALL_V = np.array(list(itertools.product([0, 1], repeat=V)), dtype=float)


def sig(x):
    return 1 / (1 + np.exp(-x))


def log_likelihood(W, b, c):
    """Exact mean log-likelihood of the data (log Z by enumerating the 2^16 visible states)."""
    b, c = b - W.sum(1) * LAM, c - MU @ W  # the centred model as a plain RBM

    def free(v):
        return v @ b + np.logaddexp(0, v @ W + c).sum(1)

    f = free(ALL_V)
    m = f.max()
    return free(X).mean() - (m + np.log(np.exp(f - m).sum()))


def draw(rng, p):
    return (rng.random(p.shape) < p).astype(float)


def synchronous(seed, ticks_per_step):
    rng = np.random.default_rng(seed)
    W, b, c = rng.normal(0, 0.01, (V, H)), np.zeros(V), np.zeros(H)
    vel = [np.zeros_like(W), np.zeros_like(b), np.zeros_like(c)]
    for t in range(STEPS):
        ph, v = sig((X - MU) @ W + c), X.copy()
        for _ in range(K):
            v = draw(rng, sig((draw(rng, sig((v - MU) @ W + c)) - LAM) @ W.T + b))
        nh = sig((v - MU) @ W + c)
        grads = [((X - MU).T @ (ph - LAM) - (v - MU).T @ (nh - LAM)) / N, (X - v).mean(0), (ph - nh).mean(0)]
        lr = LR * (1 - t / STEPS)
        for p, u, g in zip([W, b, c], vel, grads):
            u *= MOMENTUM
            u += lr * g
            p += u
        if t % 10 == 9 and log_likelihood(W, b, c) >= TARGET:
            return (t + 1) * ticks_per_step
    return None


def asynchronous(seed, lag, time_schedule, slow=2):
    rng = np.random.default_rng(seed)
    W0 = rng.normal(0, 0.01, (V, H))
    view = [[W0.copy(), np.zeros(V), np.zeros(H)] for _ in range(2)]  # each shard's parameters
    vel = [[np.zeros((V, 8)), np.zeros(8), np.zeros(8)] for _ in range(2)]
    pub_v = [X[:, OWN_V[s]].copy() for s in range(2)]  # newest published spins of each shard
    pub_h = [np.zeros((N, 8)) for _ in range(2)]
    steps = [0, 0]
    chain = [None, None]

    def begin(s):
        W, _, c = view[s]
        chain[s] = {'ph': sig((X - MU) @ W[:, OWN_H[s]] + c[OWN_H[s]]), 'v': X[:, OWN_V[s]].copy(), 'sweeps': 0}

    def full_v(s, own):
        v = np.empty((N, V))
        v[:, OWN_V[s]], v[:, OWN_V[1 - s]] = own, pub_v[1 - s]
        return v

    begin(0)
    begin(1)
    for sweep in range(2 * slow * STEPS * K):
        for s in (0, 1):
            if sweep % (1 if s == 0 else slow):
                continue
            W, b, c = view[s]
            st = chain[s]
            h_own = draw(rng, sig((full_v(s, st['v']) - MU) @ W[:, OWN_H[s]] + c[OWN_H[s]]))
            pub_h[s] = h_own
            h = np.empty((N, H))
            h[:, OWN_H[s]], h[:, OWN_H[1 - s]] = h_own, pub_h[1 - s]
            st['v'] = pub_v[s] = draw(rng, sig((h - LAM) @ W[OWN_V[s]].T + b[OWN_V[s]]))
            st['sweeps'] += 1
            if st['sweeps'] < K:
                continue
            v = full_v(s, st['v'])
            nh = sig((v - MU) @ W[:, OWN_H[s]] + c[OWN_H[s]])
            grads = [
                ((X - MU).T @ (st['ph'] - LAM) - (v - MU).T @ (nh - LAM)) / N,
                (X[:, OWN_V[s]] - st['v']).mean(0),
                (st['ph'] - nh).mean(0),
            ]
            done = sweep / (slow * STEPS * K) if time_schedule else steps[s] / STEPS
            lr = LR * max(0.0, 1 - done)
            owned = [(W, (slice(None), OWN_H[s])), (b, OWN_V[s]), (c, OWN_H[s])]
            for (p, idx), u, g in zip(owned, vel[s], grads):
                u *= MOMENTUM
                u += lr * g
                p[idx] += u
            steps[s] += 1
            begin(s)
        if (sweep + 1) % K:
            continue
        tick = (sweep + 1) // K
        if tick % lag == 0:  # each replica gets its owner's parameters
            for s in (0, 1):
                o = view[1 - s]
                o[0][:, OWN_H[s]], o[1][OWN_V[s]], o[2][OWN_H[s]] = (
                    view[s][0][:, OWN_H[s]], view[s][1][OWN_V[s]], view[s][2][OWN_H[s]])
        if tick % 10 == 0:
            W, b, c = np.empty((V, H)), np.empty(V), np.empty(H)
            for s in (0, 1):
                W[:, OWN_H[s]], b[OWN_V[s]], c[OWN_H[s]] = (
                    view[s][0][:, OWN_H[s]], view[s][1][OWN_V[s]], view[s][2][OWN_H[s]])
            if log_likelihood(W, b, c) >= TARGET:
                return tick
        if min(steps) >= STEPS:
            return None
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, default=8)
    ap.add_argument('--lag', type=int, default=1)
    ap.add_argument('--time-schedule', action='store_true')
    a = ap.parse_args()
    seeds = range(a.seeds)
    runs = {
        'lockstep': [synchronous(s, 2) for s in seeds],
        'no straggler': [synchronous(s, 1) for s in seeds],
        f'async (lag {a.lag})': [asynchronous(s, a.lag, a.time_schedule) for s in seeds],
    }
    base = np.mean([t for t in runs['lockstep'] if t])
    for name, ticks in runs.items():
        ok = [t for t in ticks if t]
        print(f'{name:>16}: ticks to {TARGET} {ticks}; mean {np.mean(ok):.0f}, {np.mean(ok) / base:.3f} of lockstep')


if __name__ == '__main__':
    main()
