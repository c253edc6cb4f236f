"""The attacks, run for real against the trained models.

Each attack sees the model only through an :class:`Oracle`: it sends
feature vectors (at the precision a caller sends) and gets back what the
API returns, the predicted label and that label's score rounded to four
decimals. Both models are binary, so label + score already give the whole
probability vector; ``scores_returned`` changes what the event says, not
what a binary attacker learns. What the attacker knows besides the answers
is :class:`Knowledge`: a small auxiliary sample of real-looking records and
per-feature plausible ranges derived from it (what published reference
ranges would give).

Nothing here looks at the model's internals, its training data or the
hospital's patients, except where an outcome is *measured* for
attacks.json (agreement on held-out records, distance to the training
class centroid), which happens after the attack and sends no query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models import Endpoint


@dataclass
class Query:
    x: np.ndarray
    label: int
    score: float
    patient: str | None
    pause_before: bool  # the attacker stopped to compute before sending it


class Oracle:
    """The model as one attacker sees it; records every query it answers."""

    def __init__(self, ep: Endpoint):
        self.ep = ep
        self.log: list[Query] = []
        self._pause = False

    def pause(self) -> None:
        """The next query follows a computation step (retraining, ...)."""
        self._pause = True

    def ask(self, X: np.ndarray, patients: list[str | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Sends rows of ``X``; returns (the sent rows, P) where ``P[:, c]``
        is the probability of class ``c`` as reconstructed from the answer."""
        X = self.ep.send(X)
        lab, score = self.ep.answer(X)
        P = np.empty((len(X), 2))
        P[np.arange(len(X)), lab] = score
        P[np.arange(len(X)), 1 - lab] = np.round(1.0 - score, 4)
        for i in range(len(X)):
            self.log.append(Query(X[i], int(lab[i]), float(score[i]),
                                  None if patients is None else patients[i], self._pause))
            self._pause = False
        return X, P

    @property
    def used(self) -> int:
        return len(self.log)


@dataclass
class Knowledge:
    """What the attacker knows about the input space."""

    aux_X: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    categorical: np.ndarray
    levels: list[np.ndarray]

    @classmethod
    def of(cls, ep: Endpoint, aux_X: np.ndarray) -> "Knowledge":
        lo, hi = aux_X.min(0), aux_X.max(0)
        span = hi - lo
        lo = np.where(ep.categorical, lo, lo - 0.1 * span)
        hi = np.where(ep.categorical, hi, hi + 0.1 * span)
        lo = np.where(ep.nonneg, np.maximum(lo, 0.0), lo)
        levels = [np.unique(aux_X[:, j]) for j in range(aux_X.shape[1])]
        return cls(aux_X, lo, hi, aux_X.mean(0), aux_X.std(0) + 1e-12,
                   ep.categorical, levels)

    def norm(self, X):
        return (X - self.lo) / (self.hi - self.lo)

    def denorm(self, U):
        return self.lo + U * (self.hi - self.lo)

    def clip(self, X):
        X = np.clip(X, self.lo, self.hi)
        for j in np.flatnonzero(self.categorical):
            lv = self.levels[j]
            X[..., j] = lv[np.argmin(np.abs(X[..., j, None] - lv), axis=-1)]
        return X


def _logp(p):
    return np.log(np.clip(p, 1e-4, 1.0))


def inversion(oracle: Oracle, kn: Knowledge, target: int, budget: int,
              rng: np.random.Generator, k: int = 2, h: float = 0.02,
              beta: float = 0.05, patience: int = 12) -> dict:
    """Confidence climbing (Fredrikson et al. 2015, black-box variant).

    Scores a dozen auxiliary records and starts from the one of the other
    class whose target confidence is closest to 0.05 (a real-looking
    record to morph). It then climbs

        J(x) = log p(target | x) - beta * mean(((x - aux mean) / aux std)**2)

    (the second term, computed by the attacker without a query, is the
    plausibility prior that keeps the reconstruction a realistic record, the
    role of MI-Face's auxiliary term) by zeroth-order coordinate ascent in
    range-normalised space: each iteration probes ``k`` random
    non-categorical features one at a time with a forward difference of
    ``h`` (a step of 2% of the range, many near-identical queries), moves
    those features along the estimated partial gradient (at most 3% of
    the range each), and keeps the move only if J rose (otherwise the step
    size halves). It stops when ``patience`` iterations in a row gain less
    than 0.001 in J, or the budget is spent.
    """
    ep = oracle.ep
    free = np.flatnonzero(~kn.categorical)

    def prior(x):
        return beta * np.mean(((x - kn.mean) / kn.std) ** 2, axis=-1)

    # Score a few auxiliary records to pick a start (these queries count).
    pick = np.sort(rng.choice(len(kn.aux_X), size=min(12, len(kn.aux_X)), replace=False))
    _, P = oracle.ask(kn.aux_X[pick])
    other = np.flatnonzero(np.argmax(P, 1) != target)
    cand = other if len(other) else np.arange(len(pick))
    s = pick[cand[np.argmin(np.abs(P[cand, target] - 0.05))]]
    x, P0 = oracle.ask(kn.aux_X[s][None])
    x = x[0]
    p = P0[0, target]
    J = _logp(p) - prior(x)
    start_p = float(p)
    start_x = x.copy()
    eta = 0.05
    stale = 0
    iters = 0
    while oracle.used + k + 1 <= budget and stale < patience:
        iters += 1
        js = rng.choice(free, size=min(k, len(free)), replace=False)
        u = kn.norm(x)
        probes = np.repeat(u[None], len(js), 0)
        # Probe inward at the upper edge of the range.
        dirn = np.where(u[js] + h <= 1.0, h, -h)
        probes[np.arange(len(js)), js] += dirn
        probes = kn.clip(kn.denorm(probes))
        sent, Pp = oracle.ask(probes)
        du = (kn.norm(sent) - u)[np.arange(len(js)), js]
        dJ = _logp(Pp[:, target]) - prior(sent) - J
        g = np.where(du != 0, dJ / np.where(du != 0, du, 1), 0.0)
        step = np.zeros_like(u)
        step[js] = np.clip(eta * g, -0.03, 0.03)
        cand_x = kn.clip(kn.denorm(u + step))
        sent, Pc = oracle.ask(cand_x[None])
        Jc = _logp(Pc[0, target]) - prior(sent[0])
        gain = Jc - J
        if gain > 0:
            x, p, J = sent[0], Pc[0, target], Jc
            eta = min(eta * 1.5, 1.0)
        else:
            eta *= 0.5
        stale = stale + 1 if gain < 1e-3 else 0
    # Measured afterwards: did the climb move toward what the model learned
    # the target class looks like? (mean |z| distance to its training centroid)
    c = ep.train_X[ep.train_y == target]
    mu, sd = c.mean(0), ep.train_X.std(0) + 1e-12
    return {
        "target_label": ep.classes[target],
        "start_confidence": round(start_p, 4),
        "final_confidence": round(float(p), 4),
        "iterations": iters,
        "stopped": "plateau" if stale >= patience else "budget",
        "start_distance_to_class_centroid": round(float(np.mean(np.abs((start_x - mu) / sd))), 3),
        "final_distance_to_class_centroid": round(float(np.mean(np.abs((x - mu) / sd))), 3),
    }


def attribute_inference(oracle: Oracle, kn: Knowledge, victims_X: np.ndarray,
                        victims_mrn: list[str | None], known_p1: np.ndarray,
                        feature: int, coarse: int = 20, fine: int = 10) -> dict:
    """Model-inversion attribute inference (Fredrikson et al. 2014).

    For each victim the attacker knows every feature but ``feature`` and
    the model's output for the victim (the risk score shown in the chart
    or on a report, ``known_p1`` = probability of class 1). It sweeps the
    hidden feature over ``coarse`` values of its plausible range with the
    others fixed, then ``fine`` values around the best, and takes the value
    whose returned score is closest to the known one; near-ties (within
    0.005) go to the value the auxiliary data makes most likely (a
    histogram prior), as in the MAP estimator of the original attack.
    Outcome: the share of victims whose hidden value was recovered within
    5% of the plausible range, beside the share a prior-only guess (the
    auxiliary median) gets.
    """
    lo, hi = kn.lo[feature], kn.hi[feature]
    hist, edges = np.histogram(kn.aux_X[:, feature], bins=12, range=(lo, hi))
    prior = (hist + 0.5) / (hist + 0.5).sum()

    def prior_of(v):
        i = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(prior) - 1)
        return prior[i]

    tol = 0.05 * (hi - lo)
    guess_prior = float(np.median(kn.aux_X[:, feature]))
    est, truth = [], []
    for x, mrn, kp in zip(victims_X, victims_mrn, known_p1):
        best_v = None
        grid = np.linspace(lo, hi, coarse)
        step = grid[1] - grid[0]
        for stage in range(2):
            Q = np.repeat(x[None], len(grid), 0)
            Q[:, feature] = grid
            sent, P = oracle.ask(Q, [mrn] * len(grid))
            vals = sent[:, feature]
            err = np.abs(P[:, 1] - kp)
            near = err <= err.min() + 0.005
            cand = np.flatnonzero(near)
            best_v = float(vals[cand[np.argmax(prior_of(vals[cand]))]])
            if stage == 0:
                grid = np.linspace(max(lo, best_v - step), min(hi, best_v + step), fine)
        est.append(best_v)
        truth.append(float(x[feature]))
    est, truth = np.array(est), np.array(truth)
    return {
        "feature": oracle.ep.features[feature],
        "victims": len(truth),
        "tolerance": round(float(tol), 4),
        "recovered_fraction": round(float(np.mean(np.abs(est - truth) <= tol)), 3),
        "prior_guess_fraction": round(float(np.mean(np.abs(guess_prior - truth) <= tol)), 3),
        "mean_abs_error": round(float(np.mean(np.abs(est - truth))), 4),
        "prior_guess_mean_abs_error": round(float(np.mean(np.abs(guess_prior - truth))), 4),
    }


def _surrogate(seed: int):
    return make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(32,), activation="tanh", alpha=1e-3,
                      max_iter=800, random_state=seed),
    )


def _fit(model, X, y):
    """Fits; with one class seen so far the surrogate is that constant."""
    if len(np.unique(y)) < 2:
        return None
    return model.fit(X, y)


def _agreement(model, ep: Endpoint, const: int | None = None) -> float:
    """Share of the held-out real records (never seen by the attacker) on
    which the surrogate predicts the target model's label. Measured
    offline: the target's labels here are not queries."""
    truth = ep.pipeline.predict(ep.holdout_X)
    pred = np.full(len(truth), const) if model is None else model.predict(ep.holdout_X)
    return float(np.mean(pred == truth))


def _baseline(ep: Endpoint) -> float:
    truth = ep.pipeline.predict(ep.holdout_X)
    return float(np.max(np.bincount(truth, minlength=2)) / len(truth))


def extraction_random(oracle: Oracle, kn: Knowledge, n: int, rng: np.random.Generator,
                      seed: int, batch: int = 200) -> dict:
    """Equation-free extraction with uniform queries (Tramèr et al. 2016):
    inputs drawn uniformly inside each feature's plausible range
    (categorical features from their levels), full scores requested, a
    surrogate MLP trained on the returned labels."""
    X_all, y_all = [], []
    while oracle.used < n:
        m = min(batch, n - oracle.used)
        U = rng.uniform(size=(m, len(kn.lo)))
        X = kn.clip(kn.denorm(U))
        for j in np.flatnonzero(kn.categorical):
            X[:, j] = rng.choice(kn.levels[j], size=m)
        sent, P = oracle.ask(X)
        X_all.append(sent)
        y_all.append(np.argmax(P, 1))
    X, y = np.vstack(X_all), np.concatenate(y_all)
    model = _fit(_surrogate(seed), X, y)
    return {
        "surrogate": "MLP(32, tanh) behind a scaler, trained on the answers",
        "training_queries": int(len(X)),
        "agreement_on_holdout": round(_agreement(model, oracle.ep, int(np.bincount(y).argmax())), 4),
        "majority_class_baseline": round(_baseline(oracle.ep), 4),
        "holdout_records": int(len(oracle.ep.holdout_X)),
    }


def _jacobian_sign(model, X, cls):
    """sign of d P(cls | x) / dx for a fitted scaler + one-hidden-layer
    tanh MLP with a logistic output (binary)."""
    sc, mlp = model[0], model[1]
    Z = (X - sc.mean_) / sc.scale_
    W1, W2 = mlp.coefs_
    b1, b2 = mlp.intercepts_
    H = np.tanh(Z @ W1 + b1)
    o = H @ W2 + b2
    p = 1 / (1 + np.exp(-o[:, 0]))
    dz = (p * (1 - p))[:, None] * (((1 - H ** 2) * W2[:, 0]) @ W1.T)
    dx = dz / sc.scale_
    pos = mlp.classes_[1]
    return np.sign(np.where((cls == pos)[:, None], dx, -dx))


def extraction_natural(oracle: Oracle, kn: Knowledge, seed_size: int, rounds: int,
                       rng: np.random.Generator, seed: int, lam: float = 0.1,
                       tau: int = 3) -> dict:
    """Jacobian-based dataset augmentation (Papernot et al. 2017).

    Round 0 labels a seed of ``seed_size`` auxiliary records through the
    API. Each round trains the surrogate on everything labelled so far,
    then creates one new point per known point,
    ``x + lam_r * std * sign(d F_{O(x)} / dx)`` (per-feature step of
    ``lam`` auxiliary standard deviations; ``lam_r`` changes sign every
    ``tau`` rounds, as in the paper, so points also move back toward the
    boundary), clipped to plausible ranges, and sends them. The set
    doubles each round: seed_size * 2**rounds queries in all.
    """
    idx = rng.choice(len(kn.aux_X), size=min(seed_size, len(kn.aux_X)), replace=False)
    X, P = oracle.ask(kn.aux_X[np.sort(idx)])
    y = np.argmax(P, 1)
    model = None
    for r in range(rounds):
        model = _fit(_surrogate(seed + r), X, y)
        if model is None:
            # One class so far: step away from the seed at random.
            S = rng.choice([-1.0, 1.0], size=X.shape)
        else:
            S = _jacobian_sign(model, X, y)
        lr = lam * (-1.0) ** (r // tau)
        new = kn.clip(X + lr * kn.std * S)
        oracle.pause()
        sent, Pn = oracle.ask(new)
        X = np.vstack([X, sent])
        y = np.concatenate([y, np.argmax(Pn, 1)])
    model = _fit(_surrogate(seed + rounds), X, y)
    return {
        "surrogate": "MLP(32, tanh) behind a scaler, retrained each round",
        "seed_records": int(len(idx)),
        "rounds": rounds,
        "training_queries": int(len(X)),
        "agreement_on_holdout": round(_agreement(model, oracle.ep, int(np.bincount(y).argmax())), 4),
        "majority_class_baseline": round(_baseline(oracle.ep), 4),
        "holdout_records": int(len(oracle.ep.holdout_X)),
    }
