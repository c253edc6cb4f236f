"""The hospital's ordinary use of the two models.

* **Patients**: every population record of a model is a patient with a
  stable MRN, a home department and, for most, an inpatient stay
  (log-normal length; hours in emergency) somewhere around the generated
  days; the rest are clinic outpatients. A patient's feature vector is
  their current chart: new labs change it, and every later caller sees the
  new values.
* **Clinicians** (``--clinicians``): physicians (``dr-NNNN``) and nurses
  (``rn-NNNN``) in oncology (tumour model), endocrinology and emergency
  (diabetes model) and internal medicine (both). Each has a shift pattern
  (day 07-19, night 19-07, or clinic 08-17 on weekdays), works most days,
  has a log-normal personal activity level and a stable panel of patients
  of their department. In a shift they see panel patients who are in
  hospital (clinic physicians: outpatients booked that day) in encounters
  around rounds; an encounter queries the model once and may
  * re-open the chart minutes later (an exact repeat),
  * re-query after new labs (one to four lab values moved by realistic
    amounts: near-duplicates of earlier queries of the same patient),
  * (diabetes physicians) walk through a what-if with the patient: the
    same record with BMI or blood pressure lowered step by step, sometimes
    in a calculator that names no patient.
  About a quarter of clinicians sit behind an EHR integration that always
  returns full scores.
* **svc-batch-scorer**: at about 02:00 every night, scores every current
  inpatient with their model (several hundred calls in a few minutes).
* **svc-model-monitor**: at about 05:30 every day, re-scores the same fixed
  validation sets (exact repeats day after day), no patient named.
* **api-client-03**: a partner clinic's integration scoring diabetes
  referrals in office hours on weekdays.
* **api-client-11**: a telehealth self-assessment app: diabetes model,
  anonymous (no patient), values self-reported (coarser), day and evening.
* **rs-0001**: a research analyst who, once, scores a diabetes cohort from
  a notebook at machine rate and then the same cohort with BMI lowered by
  10% (a counterfactual pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models import Endpoint
from traffic import DAY, HOUR, MINUTE, SECOND, Actor, Call, exp_gaps, midnight, weekday

DEPT_MODELS = {
    "oncology": {"tumour": 1.0},
    "endocrinology": {"diabetes": 1.0},
    "internal-medicine": {"diabetes": 0.65, "tumour": 0.35},
    "emergency": {"diabetes": 1.0},
}
DEPT_SHARE = {"oncology": 0.28, "endocrinology": 0.22, "internal-medicine": 0.3, "emergency": 0.2}
HOME_DEPT = {
    "tumour": {"oncology": 0.75, "internal-medicine": 0.25},
    "diabetes": {"endocrinology": 0.45, "internal-medicine": 0.35, "emergency": 0.2},
}
# Relative encounter rate by hour of day for each shift kind.
HOUR_WEIGHTS = {
    "day": {7: 1.0, 8: 3.0, 9: 3.5, 10: 3.0, 11: 2.0, 12: 1.0, 13: 1.5, 14: 2.5, 15: 2.5, 16: 2.0, 17: 1.5, 18: 1.0},
    "night": {19: 2.0, 20: 2.0, 21: 1.5, 22: 1.0, 23: 0.7, 0: 0.5, 1: 0.4, 2: 0.4, 3: 0.4, 4: 0.5, 5: 1.2, 6: 1.8},
    "clinic": {8: 2.0, 9: 3.0, 10: 3.0, 11: 2.5, 12: 0.8, 13: 1.5, 14: 2.5, 15: 2.5, 16: 1.5},
}
SHIFT_SPAN = {"day": (7, 19), "night": (19, 31), "clinic": (8, 17)}


@dataclass
class Patient:
    mrn: str
    model: str
    dept: str
    stay: tuple[int, int] | None  # inpatient (admitted, discharged), ms
    times: list[int]  # when each version of the chart appeared
    versions: list[np.ndarray]  # the feature vector from that time on

    def inpatient(self, t: int) -> bool:
        return self.stay is not None and self.stay[0] <= t < self.stay[1]

    def at(self, t: int) -> np.ndarray:
        """The chart as it stands at ``t``."""
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        return self.versions[max(i, 0)]

    def next_result(self, t: int, until: int) -> int | None:
        """The time of the first new result after ``t`` and before ``until``."""
        i = int(np.searchsorted(self.times, t, side="right"))
        if i < len(self.times) and self.times[i] < until:
            return self.times[i]
        return None


@dataclass
class Clinician:
    actor: Actor
    pattern: str
    activity: float
    full_scores: bool
    panel: dict[str, list[int]]  # model -> patient indices
    shifts: list[tuple[int, int]] = field(default_factory=list)


def _pick(rng, weights: dict):
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


class Hospital:
    """Benign callers and their calls over [start, end)."""

    def __init__(self, eps: dict[str, Endpoint], start: int, days: int,
                 n_clinicians: int, seed: int):
        self.eps = eps
        self.start, self.days = start, days
        self.end = start + days * DAY
        self.day0 = midnight(start)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 202]))
        self.calls: list[Call] = []
        self._patients()
        self._clinicians(n_clinicians)

    # ---- people ---------------------------------------------------------

    def _patients(self):
        rng = self.rng
        total = sum(len(ep.population_X) for ep in self.eps.values())
        mrns = rng.choice(np.arange(200000, 300000), size=total, replace=False)
        self.patients: dict[str, list[Patient]] = {}
        k = 0
        for key, ep in self.eps.items():
            ps = []
            for x in ep.population_X:
                dept = _pick(rng, HOME_DEPT[key])
                stay = None
                if rng.uniform() < 0.8:
                    if dept == "emergency":
                        los = rng.lognormal(np.log(9 * HOUR), 0.5)
                        adm = rng.uniform(self.start - DAY, self.end)
                    else:
                        los = rng.lognormal(np.log(5 * DAY), 0.5)
                        adm = rng.uniform(self.start - 6 * DAY, self.end)
                    stay = (int(adm), int(adm + los))
                times, versions = [self.start - 30 * DAY], [x.copy()]
                for t in self._result_times(stay):
                    times.append(t)
                    versions.append(self._new_results(key, versions[-1]))
                ps.append(Patient(f"MRN-{mrns[k]}", key, dept, stay, times, versions))
                k += 1
            self.patients[key] = ps

    def _result_times(self, stay) -> list[int]:
        """When new results reach the chart: inpatients get morning bloods
        on most days of their stay and the odd result during the day;
        outpatients now and then a result from the clinic."""
        rng = self.rng
        out = []
        for d in range(-1, self.days):
            day = self.day0 + d * DAY
            if stay is not None:
                t = day + 6 * HOUR + int(rng.uniform(0, 90) * MINUTE)
                if stay[0] <= t < stay[1] and rng.uniform() < 0.7:
                    out.append(t)
                t = day + int(rng.uniform(8, 22) * HOUR)
                if stay[0] <= t < stay[1] and rng.uniform() < 0.35:
                    out.append(t)
            elif rng.uniform() < 0.2:
                out.append(day + int(rng.uniform(8, 17) * HOUR))
        return sorted(out)

    def _clinicians(self, n: int):
        rng = self.rng
        self.clinicians: list[Clinician] = []
        counters = {"physician": 0, "nurse": 0}
        depts = list(DEPT_SHARE)
        quota = np.floor(np.array([DEPT_SHARE[d] for d in depts]) * n).astype(int)
        quota[np.argmax(quota)] += n - quota.sum()
        plan = [d for d, q in zip(depts, quota) for _ in range(q)]
        rng.shuffle(plan)
        for dept in plan:
            role = "physician" if rng.uniform() < 0.55 else "nurse"
            counters[role] += 1
            cid = f"{'dr' if role == 'physician' else 'rn'}-{counters[role]:04d}"
            if dept == "emergency" or role == "nurse":
                pattern = "night" if rng.uniform() < 0.35 else "day"
            else:
                pattern = "clinic" if rng.uniform() < 0.35 else "day"
            panel = {}
            for key in DEPT_MODELS[dept]:
                mine = [i for i, p in enumerate(self.patients[key]) if p.dept == dept]
                size = min(len(mine), int(rng.integers(25, 70)))
                panel[key] = sorted(rng.choice(mine, size=size, replace=False).tolist())
            c = Clinician(Actor(cid, role, dept), pattern,
                          float(np.clip(rng.lognormal(np.log(11), 0.55), 2, 36)),
                          bool(rng.uniform() < 0.25), panel)
            for d in range(-1, self.days):
                day = self.day0 + d * DAY
                if pattern == "clinic" and weekday(day) >= 5:
                    continue
                if rng.uniform() < (0.85 if pattern == "clinic" else 0.65):
                    a, b = SHIFT_SPAN[pattern]
                    s, e = day + a * HOUR, day + b * HOUR
                    if e > self.start and s < self.end:
                        c.shifts.append((s, e))
            self.clinicians.append(c)

    # ---- labs -----------------------------------------------------------

    def _new_results(self, key: str, x: np.ndarray) -> np.ndarray:
        """The chart after a new set of results: a few values move by
        realistic amounts."""
        rng = self.rng
        ep = self.eps[key]
        x = x.copy()
        if key == "diabetes":
            f = {n: i for i, n in enumerate(ep.features)}
            labs = rng.choice(["s1", "s2", "s3", "s4", "s5", "s6", "bp"], size=int(rng.integers(1, 5)), replace=False)
            for n in labs:
                j = f[n]
                if n == "s5":
                    x[j] += rng.normal(0, 0.05)
                elif n == "bp":
                    x[j] += rng.normal(0, 4)
                else:
                    x[j] *= 1 + rng.normal(0, 0.05)
            if rng.uniform() < 0.15:
                x[f["bmi"]] += rng.normal(0, 0.3)
        else:
            # A re-read of the aspirate: a few base measurements change, and
            # with them their mean / standard error / worst values, with
            # perimeter and area following the radius.
            bases = rng.choice(10, size=int(rng.integers(1, 4)), replace=False)
            for b in bases:
                r = 1 + rng.normal(0, 0.03)
                x[b] *= r
                x[20 + b] *= r
                x[10 + b] *= 1 + rng.normal(0, 0.05)
                if b == 0:  # radius: perimeter ~ r, area ~ r^2
                    for j in (2, 22):
                        x[j] *= r
                    for j in (3, 23):
                        x[j] *= r * r
        return ep.send(x)[0]

    # ---- clinicians -----------------------------------------------------

    def _shift_times(self, c: Clinician, s: int, n: int) -> np.ndarray:
        a, _ = SHIFT_SPAN[c.pattern]
        w = HOUR_WEIGHTS[c.pattern]
        hours = list(w)
        p = np.array([w[h] for h in hours])
        h = self.rng.choice(len(hours), size=n, p=p / p.sum())
        offs = np.array([((hours[i] - a) % 24) * HOUR for i in h]) + self.rng.integers(0, HOUR, size=n)
        return np.sort(s + offs)

    def _call(self, t, c: Clinician, key, x, patient):
        if self.start <= t < self.end:
            emerg = c.actor.dept == "emergency" and self.rng.uniform() < 0.03
            purpose = None if self.rng.uniform() < 0.05 else ("ETREAT" if emerg else "TREAT")
            self.calls.append(Call(int(t), c.actor, key, x.copy(), patient, c.full_scores, purpose))

    def clinician_traffic(self):
        rng = self.rng
        for c in self.clinicians:
            for s, e in c.shifts:
                rate = c.activity * (0.8 if c.pattern == "night" else 1.0)
                n = int(rng.poisson(rate))
                if n == 0:
                    continue
                for t in self._shift_times(c, s, n):
                    key = _pick(rng, DEPT_MODELS[c.actor.dept])
                    ps = self.patients[key]
                    if c.pattern == "clinic":
                        active = [i for i in c.panel[key] if not ps[i].inpatient(t)]
                    else:
                        active = [i for i in c.panel[key] if ps[i].inpatient(t)]
                    if not active:
                        continue
                    self._encounter(c, key, ps[int(rng.choice(active))], int(t), e)

    def _encounter(self, c: Clinician, key: str, p: Patient, t: int, shift_end: int):
        rng = self.rng
        self._call(t, c, key, p.at(t), p.mrn)
        if rng.uniform() < 0.25:  # chart re-opened, the score recomputed
            t2 = t + int(rng.uniform(1, 20) * MINUTE)
            if t2 < shift_end:
                self._call(t2, c, key, p.at(t2), p.mrn)
        r = p.next_result(t, min(shift_end, t + 4 * HOUR))
        if r is not None and rng.uniform() < 0.6:  # new results: look again
            t2 = r + int(rng.uniform(5, 60) * MINUTE)
            if t2 < shift_end:
                self._call(t2, c, key, p.at(t2), p.mrn)
        if key == "diabetes" and c.actor.role == "physician" and rng.uniform() < 0.08:
            self._what_if(c, p, t + int(rng.uniform(1, 5) * MINUTE))

    def _what_if(self, c: Clinician, p: Patient, t: int):
        """Counselling: the same record with BMI (or blood pressure) lowered
        step by step, a few seconds to a minute apart."""
        rng = self.rng
        ep = self.eps["diabetes"]
        j = ep.features.index("bmi" if rng.uniform() < 0.7 else "bp")
        step = 1.0 if ep.features[j] == "bmi" else 5.0
        named = rng.uniform() < 0.7
        x = p.at(t).copy()
        for _ in range(int(rng.integers(3, 7))):
            x[j] -= step * rng.choice([1, 1, 2])
            t += int(rng.uniform(5, 60) * SECOND)
            self._call(t, c, "diabetes", ep.send(x)[0], p.mrn if named else None)

    # ---- services and integrations -------------------------------------

    def batch_scorer(self):
        actor = Actor("svc-batch-scorer", "service", "informatics")
        rng = self.rng
        for d in range(self.days + 1):
            t = self.day0 + d * DAY + 2 * HOUR + int(rng.uniform(0, 10) * MINUTE)
            todo = [p for key in self.eps for p in self.patients[key] if p.inpatient(t)]
            order = rng.permutation(len(todo))
            gaps = exp_gaps(rng, len(todo), 0.35 * SECOND, 60)
            for i, g in zip(order, gaps):
                t += int(g)
                p = todo[i]
                if self.start <= t < self.end:
                    self.calls.append(Call(t, actor, p.model, p.at(t).copy(), p.mrn, True, "TREAT"))

    def model_monitor(self):
        actor = Actor("svc-model-monitor", "service", "informatics")
        rng = self.rng
        sets = {key: ep.send(ep.validation_X) for key, ep in self.eps.items()}
        for d in range(self.days):
            t = self.day0 + d * DAY + 5 * HOUR + 30 * MINUTE + int(rng.uniform(0, 5) * MINUTE)
            for key, V in sets.items():
                for x, g in zip(V, exp_gaps(rng, len(V), 0.2 * SECOND, 50)):
                    t += int(g)
                    if self.start <= t < self.end:
                        self.calls.append(Call(t, actor, key, x.copy(), None, True, "HOPERAT"))

    def partner_clinic(self):
        actor = Actor("api-client-03", "service")
        rng = self.rng
        ps = self.patients["diabetes"]
        pool = rng.choice(len(ps), size=min(90, len(ps)), replace=False)
        for d in range(self.days):
            day = self.day0 + d * DAY
            if weekday(day) >= 5:
                continue
            n = int(rng.poisson(30))
            for t in np.sort(day + 8 * HOUR + rng.integers(0, 9 * HOUR, size=n)):
                p = ps[int(rng.choice(pool))]
                if self.start <= t < self.end:
                    self.calls.append(Call(int(t), actor, "diabetes", p.at(t).copy(), p.mrn, True, "TREAT"))

    def telehealth(self):
        """Anonymous self-assessments: a real-looking person (a population
        record) with self-reported values: age and BMI as typed, blood
        pressure from a home cuff, labs from a recent report."""
        actor = Actor("api-client-11", "service")
        rng = self.rng
        ep = self.eps["diabetes"]
        pop = ep.population_X
        w = np.array([0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 1.5, 1.8, 1.8, 1.6,
                      1.5, 1.6, 1.6, 1.5, 1.4, 1.5, 1.8, 2.0, 2.0, 1.6, 1.0, 0.5])
        for d in range(self.days):
            day = self.day0 + d * DAY
            n = int(rng.poisson(45))
            hrs = rng.choice(24, size=n, p=w / w.sum())
            for t in np.sort(day + hrs * HOUR + rng.integers(0, HOUR, size=n)):
                x = pop[int(rng.integers(len(pop)))].copy()
                x[0] = np.round(x[0] + rng.integers(-3, 4))
                x[2] = np.round(x[2] + rng.normal(0, 1.0))
                x[3] = np.round(x[3] + rng.normal(0, 6))
                x[4:] *= 1 + rng.normal(0, 0.04, size=len(x) - 4)
                self.calls.append(Call(int(t), actor, "diabetes", ep.send(x)[0], None, False, None))

    def researcher(self):
        """Once, early afternoon on the second day: a cohort scored from a
        notebook, then the same cohort with BMI lowered by 10%."""
        actor = Actor("rs-0001", "researcher", "research")
        rng = self.rng
        ep = self.eps["diabetes"]
        ps = self.patients["diabetes"]
        cohort = np.sort(rng.choice(len(ps), size=min(150, len(ps)), replace=False))
        d = min(1, self.days - 1)
        t = self.day0 + d * DAY + 14 * HOUR + int(rng.uniform(0, 60) * MINUTE)
        jb = ep.features.index("bmi")
        for pass_ in range(2):
            for i, g in zip(cohort, exp_gaps(rng, len(cohort), 0.6 * SECOND, 80)):
                t += int(g)
                x = ps[i].at(t).copy()
                if pass_ == 1:
                    x[jb] *= 0.9
                if self.start <= t < self.end:
                    self.calls.append(Call(t, actor, "diabetes", ep.send(x)[0], ps[i].mrn, True, "HRESCH"))
            t += int(rng.uniform(8, 25) * MINUTE)

    def generate(self) -> list[Call]:
        self.clinician_traffic()
        self.batch_scorer()
        self.model_monitor()
        self.partner_clinic()
        self.telehealth()
        self.researcher()
        return self.calls
