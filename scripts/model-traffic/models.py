"""The two clinical models behind the inference endpoint, and the data
they are trained on.

Both models take features in raw clinical units (a tumour area of ~1000
beside a smoothness of ~0.1; age in years, cholesterol in mg/dL); the
scaling lives inside the model, as it would in a deployed pipeline. Each
data set is split once, by the seed, into

* ``train``: the half the model learned from;
* ``validation``: a fixed labelled reference set taken from the training
  half, re-scored every day by the model-monitoring job;
* ``aux``: a small slice the attacker holds (real-looking records it
  obtained elsewhere); the model never saw it;
* ``population``: the rest, the hospital's patients. It is topped up with
  SMOTE-style interpolations between same-class neighbours so the hospital
  has a few hundred patients per model. Only its real rows are used to
  measure extracted models (``holdout``): the attacker never sees them.

:class:`Endpoint.answer` is the only way anything gets an output: every
label and score in the traffic comes from ``predict_proba`` of the trained
pipeline on exactly the (rounded) numbers that are written to the event.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SCORE_DECIMALS = 4


def round_sig(x: np.ndarray, digits: int) -> np.ndarray:
    """Rounds to ``digits`` significant digits (zeros stay zero).

    An integer divided by (or multiplied with) an exact power of ten is
    the double nearest to the decimal, so the shortest repr of the result
    is the decimal itself and reads back as the same double.
    """
    x = np.asarray(x, dtype=float)
    out = np.zeros_like(x)
    nz = x != 0
    mag = np.floor(np.log10(np.abs(x[nz]))).astype(int)
    d = digits - 1 - mag
    v = x[nz]
    res = np.empty_like(v)
    pos = d >= 0
    res[pos] = np.round(v[pos] * 10.0 ** d[pos]) / 10.0 ** d[pos]
    neg = ~pos
    res[neg] = np.round(v[neg] / 10.0 ** (-d[neg])) * 10.0 ** (-d[neg])
    out[nz] = res
    return out


def round_dec(x: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    """Rounds column ``j`` to ``decimals[j]`` decimal places."""
    x = np.asarray(x, dtype=float)
    scale = 10.0 ** np.asarray(decimals, dtype=float)
    return np.round(x * scale) / scale


def native_decimals(X: np.ndarray, most: int = 4) -> np.ndarray:
    """Per column, the fewest decimals that reproduce every recorded value."""
    out = []
    for col in X.T:
        for d in range(most + 1):
            if np.all(np.abs(col - np.round(col, d)) < 1e-9):
                break
        out.append(d)
    return np.array(out)


@dataclass
class Endpoint:
    """One deployed model: its identity, its input precision, its data."""

    key: str
    id: str
    version: str
    features: list[str]
    classes: list[str]
    pipeline: object
    sig_digits: int | None
    decimals: np.ndarray | None
    nonneg: np.ndarray
    categorical: np.ndarray
    train_X: np.ndarray
    train_y: np.ndarray
    validation_X: np.ndarray
    aux_X: np.ndarray
    aux_y: np.ndarray
    holdout_X: np.ndarray
    holdout_y: np.ndarray
    population_X: np.ndarray
    population_y: np.ndarray
    test_accuracy: float = 0.0
    answered: int = field(default=0)

    @property
    def dim(self) -> int:
        return len(self.features)

    def send(self, X: np.ndarray) -> np.ndarray:
        """The numbers a caller actually sends: realistic precision,
        no negative value where the quantity cannot be negative."""
        X = np.atleast_2d(np.asarray(X, dtype=float)).copy()
        X[:, self.nonneg] = np.maximum(X[:, self.nonneg], 0.0)
        if self.sig_digits is not None:
            X = round_sig(X, self.sig_digits)
        else:
            X = round_dec(X, self.decimals)
        X[X == 0] = 0.0  # no "-0"
        assert np.all(np.isfinite(X))
        return X

    def answer(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calls the model. Returns (label index, score of that label)
        per row, the score rounded as the API returns it."""
        X = np.atleast_2d(X)
        P = self.pipeline.predict_proba(X)
        lab = np.argmax(P, axis=1)
        score = np.round(P[np.arange(len(X)), lab], SCORE_DECIMALS)
        self.answered += len(X)
        return lab, score


def _split(rng, y, fractions):
    """Stratified split of row indices into parts of the given fractions
    (the last part takes the remainder)."""
    parts = [[] for _ in fractions]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for i, f in enumerate(fractions):
            n = len(idx) - start if i == len(fractions) - 1 else int(round(f * len(idx)))
            parts[i].extend(idx[start:start + n].tolist())
            start += n
    return [np.array(sorted(p)) for p in parts]


def _smote(rng, X, y, n_total, categorical, k=5):
    """Tops ``X`` up to ``n_total`` rows with interpolations between a row
    and one of its ``k`` nearest same-class neighbours (standardised
    distance); categorical columns are copied from the first row."""
    mu, sd = X.mean(0), X.std(0) + 1e-12
    Z = (X - mu) / sd
    new_X, new_y = [], []
    while len(X) + len(new_X) < n_total:
        i = int(rng.integers(len(X)))
        same = np.flatnonzero(y == y[i])
        d = np.sum((Z[same] - Z[i]) ** 2, axis=1)
        nb = same[np.argsort(d)[1:k + 1]]
        j = int(rng.choice(nb))
        lam = rng.uniform(0.15, 0.85)
        x = X[i] + lam * (X[j] - X[i])
        x[categorical] = X[i, categorical]
        new_X.append(x)
        new_y.append(y[i])
    if not new_X:
        return X, y
    return np.vstack([X, new_X]), np.concatenate([y, new_y])


def build(seed: int, population_size: int = 400) -> dict[str, Endpoint]:
    """Trains both models and splits their data; deterministic in ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 101]))
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    eps = {}

    # tumour-malignancy 1.0: Wisconsin diagnostic breast cancer (FNA image
    # measurements), 0 = malignant, 1 = benign in the bundled data.
    bc = load_breast_cancer()
    X, y = bc.data, bc.target
    tr, aux, pop = _split(rng, y, [0.5, 0.08, 0.42])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=5000))
    model.fit(X[tr], y[tr])
    val = rng.choice(tr, size=120, replace=False)
    cat = np.zeros(X.shape[1], dtype=bool)
    pop_X, pop_y = _smote(rng, X[pop], y[pop], population_size, cat)
    ep = Endpoint(
        key="tumour", id="tumour-malignancy", version="1.0",
        features=[str(f) for f in bc.feature_names],
        classes=[str(c) for c in bc.target_names],
        pipeline=model, sig_digits=4, decimals=None,
        nonneg=np.ones(X.shape[1], dtype=bool), categorical=cat,
        train_X=X[tr], train_y=y[tr], validation_X=X[np.sort(val)],
        aux_X=X[aux], aux_y=y[aux], holdout_X=X[pop], holdout_y=y[pop],
        population_X=pop_X, population_y=pop_y,
    )
    ep.population_X = ep.send(ep.population_X)
    ep.test_accuracy = float(np.mean(model.predict(X[pop]) == y[pop]))
    eps["tumour"] = ep

    # diabetes-progression 2.0: the diabetes study in raw units; the
    # outcome (disease progression one year after baseline) binarised at
    # its median, 1 = "high".
    db = load_diabetes(scaled=False)
    X = db.data
    y = (db.target > np.median(db.target)).astype(int)
    tr, aux, pop = _split(rng, y, [0.5, 0.09, 0.41])
    model = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(16,), alpha=0.05, max_iter=3000,
                      random_state=seed),
    )
    model.fit(X[tr], y[tr])
    val = rng.choice(tr, size=150, replace=False)
    names = [str(f) for f in db.feature_names]
    cat = np.array([n == "sex" for n in names])
    dec = native_decimals(X)
    pop_X, pop_y = _smote(rng, X[pop], y[pop], population_size, cat)
    ep = Endpoint(
        key="diabetes", id="diabetes-progression", version="2.0",
        features=names, classes=["low", "high"],
        pipeline=model, sig_digits=None, decimals=dec,
        nonneg=np.ones(X.shape[1], dtype=bool), categorical=cat,
        train_X=X[tr], train_y=y[tr], validation_X=X[np.sort(val)],
        aux_X=X[aux], aux_y=y[aux], holdout_X=X[pop], holdout_y=y[pop],
        population_X=pop_X, population_y=pop_y,
    )
    ep.population_X = ep.send(ep.population_X)
    ep.test_accuracy = float(np.mean(model.predict(X[pop]) == y[pop]))
    eps["diabetes"] = ep
    return eps
