"""Which attacks run, by whom, when, and how fast.

Sixteen instances by default: each of the eight kinds once against each
model, half run from stolen clinician accounts (a benign clinician of a
department that uses the model, whose ordinary traffic goes on beside the
attack) and half from API clients (``api-client-NN``, role ``service``).
Every instance has its own caller.

Fast instances send at machine rate (exponential gaps, a few calls a
second) and pause a few seconds where the algorithm computes (a surrogate
retrained between rounds): minutes in all. API clients run at any hour;
stolen accounts inside one of the owner's shifts. Slow instances run the
same algorithm with a smaller budget, one call every few minutes, spread
evenly (with jitter) through working hours: 08-18 for API clients, the
owner's shifts for stolen accounts, over all the days (after
``--quiet-hours``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import attacks
from benign import Clinician, Hospital
from traffic import DAY, HOUR, MINUTE, SECOND, Actor, Call, exp_gaps, spread

# (scenario, model, caller kind) for the default run.
INSTANCES = [
    ("inversion", "tumour", "api"),
    ("inversion", "diabetes", "stolen"),
    ("attribute_inference", "diabetes", "stolen"),
    ("attribute_inference", "tumour", "api"),
    ("extraction_random", "tumour", "api"),
    ("extraction_random", "diabetes", "stolen"),
    ("extraction_natural", "diabetes", "api"),
    ("extraction_natural", "tumour", "stolen"),
    ("inversion_slow", "diabetes", "api"),
    ("inversion_slow", "tumour", "stolen"),
    ("attribute_inference_slow", "tumour", "stolen"),
    ("attribute_inference_slow", "diabetes", "api"),
    ("extraction_random_slow", "diabetes", "api"),
    ("extraction_random_slow", "tumour", "stolen"),
    ("extraction_natural_slow", "tumour", "api"),
    ("extraction_natural_slow", "diabetes", "stolen"),
]
# The class an inversion climbs toward, and the hidden attribute.
INVERSION_TARGET = {"tumour": "malignant", "diabetes": "high"}
HIDDEN = {"tumour": "worst texture", "diabetes": "bmi"}
BENIGN_API = {3, 11}


@dataclass
class Instance:
    scenario: str
    model: str
    actor: Actor
    caller: str  # "api-client" or "stolen-clinician"
    calls: list[Call]
    outcome: dict


def _fast_times(rng, queries, t0, mean_gap):
    gaps = exp_gaps(rng, len(queries), mean_gap, 60)
    for i, q in enumerate(queries):
        if q.pause_before:
            gaps[i] += int(rng.uniform(2, 8) * SECOND)
    gaps[0] = 0
    return t0 + np.cumsum(gaps)


class Planner:
    def __init__(self, hosp: Hospital, seed: int, quiet_hours: float):
        self.h = hosp
        self.eps = hosp.eps
        self.seed = seed
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 303]))
        self.from_t = hosp.start + int(quiet_hours * HOUR)
        if self.from_t >= hosp.end - 6 * HOUR:
            raise ValueError("--quiet-hours leaves less than six hours for attacks")
        free = [n for n in range(12, 100) if n not in BENIGN_API]
        self.api_ids = [f"api-client-{n:02d}" for n in self.rng.choice(free, size=len(free), replace=False)]
        self.used: set[str] = set()

    # ---- callers --------------------------------------------------------

    def _api(self) -> Actor:
        a = self.api_ids.pop(0)
        return Actor(a, "service")

    def _windows(self, c: Clinician) -> list[tuple[int, int]]:
        """The owner's shifts after the quiet period, an hour or longer."""
        w = [(max(s, self.from_t), min(e, self.h.end)) for s, e in c.shifts]
        return [(s, e) for s, e in w if e - s >= HOUR]

    def _stolen(self, model: str, slow: bool) -> Clinician | None:
        """A clinician whose department uses ``model`` with shift time to
        attack in (8 hours in all for a slow attack); the busiest are
        preferred, their own traffic hiding the attack best. None when
        nobody qualifies (the instance then runs from an API client)."""
        ok = []
        for c in self.h.clinicians:
            if c.actor.id in self.used or model not in c.panel:
                continue
            total = sum(e - s for s, e in self._windows(c))
            if total >= (8 * HOUR if slow else HOUR):
                ok.append((-total, c.actor.id, c))
        if not ok:
            return None
        ok.sort(key=lambda v: v[:2])
        c = ok[int(self.rng.integers(min(4, len(ok))))][2]
        self.used.add(c.actor.id)
        return c

    # ---- the attacks ----------------------------------------------------

    def _run(self, idx: int, scenario: str, model: str, stolen: bool) -> tuple[attacks.Oracle, dict]:
        ep = self.eps[model]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 404, idx]))
        kn = attacks.Knowledge.of(ep, ep.aux_X)
        o = attacks.Oracle(ep)
        slow = scenario.endswith("_slow")
        kind = scenario.removesuffix("_slow")
        if kind == "inversion":
            target = ep.classes.index(INVERSION_TARGET[model])
            out = attacks.inversion(o, kn, target, 300 if slow else 450, rng)
        elif kind == "attribute_inference":
            n = 8 if slow else 12
            ps = self.h.patients[model]
            vi = np.sort(rng.choice(len(ps), size=n, replace=False))
            X = np.array([ps[i].versions[0] for i in vi])
            mrns = [ps[i].mrn if stolen else None for i in vi]
            lab, score = ep.answer(X)  # the score the attacker saw in the chart
            known_p1 = np.where(lab == 1, score, 1 - score)
            out = attacks.attribute_inference(o, kn, X, mrns, known_p1, ep.features.index(HIDDEN[model]))
        elif kind == "extraction_random":
            out = attacks.extraction_random(o, kn, 450 if slow else 3000, rng, self.seed)
        else:
            seed_size, rounds = (25, 4) if slow else (40, 6)
            out = attacks.extraction_natural(o, kn, seed_size, rounds, rng, self.seed)
        out["queries"] = o.used
        return o, out

    def _times(self, queries: list[attacks.Query], slow: bool, stolen: Clinician | None) -> np.ndarray:
        n_queries = len(queries)
        rng = self.rng
        h = self.h
        if slow:
            if stolen is not None:
                wins = self._windows(stolen)
            else:
                wins = []
                for d in range(h.days):
                    a, b = h.day0 + d * DAY + 8 * HOUR, h.day0 + d * DAY + 18 * HOUR
                    a, b = max(a, self.from_t), min(b, h.end)
                    if b - a > HOUR:
                        wins.append((a, b))
            return spread(rng, n_queries, wins or [(self.from_t, h.end)])
        mean_gap = 0.45 * SECOND if stolen is not None else 0.25 * SECOND
        est = int(n_queries * mean_gap * 1.3 + 3 * MINUTE)
        if stolen is not None:
            shifts = self._windows(stolen)
            s, e = shifts[int(rng.integers(len(shifts)))]
            # An attack longer than what is left of the shift runs on past
            # its end (the script does not stop when the owner goes home).
            t0 = s + int(rng.uniform(0, max(e - s - est, 1)))
        else:
            t0 = self.from_t + int(rng.uniform(0, max(h.end - self.from_t - est - HOUR, 1)))
        times = _fast_times(rng, queries, t0, mean_gap)
        if times[-1] >= h.end:  # too close to the end: start earlier
            times -= times[-1] - h.end + 1 + int(rng.uniform(1, 30) * MINUTE)
        if times[0] < self.from_t:
            raise ValueError("the generated period is too short for a fast attack")
        return times

    def run(self) -> list[Instance]:
        out = []
        for idx, (scenario, model, kind) in enumerate(INSTANCES):
            slow = scenario.endswith("_slow")
            clin = None
            if kind == "stolen":
                clin = self._stolen(model, slow)
            actor = clin.actor if clin is not None else self._api()
            o, outcome = self._run(idx, scenario, model, clin is not None)
            times = self._times(o.log, slow, clin)
            extraction = "extraction" in scenario
            full = True if (extraction or clin is None) else clin.full_scores
            purpose = "TREAT" if clin is not None else None
            calls = [Call(int(t), actor, model, q.x, q.patient, full, purpose, idx, q.label, q.score)
                     for t, q in zip(times, o.log)]
            assert all(self.from_t <= c.t < self.h.end for c in calls), scenario
            out.append(Instance(scenario, model, actor,
                                "stolen-clinician" if clin is not None else "api-client",
                                calls, outcome))
        return out

