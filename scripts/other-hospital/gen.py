#!/usr/bin/env python3
"""A second, independent synthetic hospital workload for `custos eval`.

St. Brendan's Regional Hospital (fictional) is run differently from the
hospital of `custos gen`: it is in UTC-5 (events are in UTC), has a
maternity unit, psychiatry, orthopaedics, general medicine, an outpatient
clinic open on weekdays, a dialysis unit with fixed sessions, and mixes
12-hour ward shifts, 10-hour emergency physician shifts, 24-hour obstetric
shifts, 8-hour shifts (07-15, 15-23, 23-07 local) and office hours. It has
float-pool nurses, residents rotating weekly, part-timers, an evening
tele-health clinic worked from home over the VPN, a night lab that
verifies the morning draws of every inpatient, an HIE interface account,
an incomplete care-team table (about 15% of assignments missing, rows
naming both an actor and a department, open-ended rows) and an order feed
that does not always name the performing department.

Misuse of the eleven scenarios of docs/workload.md is injected by its own
attack code with its own parameters (see README.md). Python 3 standard
library only; the output is deterministic for a given seed and arguments.

    python3 gen.py --out /tmp/other-hosp [--days 14] [--staff 250]
                   [--patients 7000] [--seed 2718] [--start 2026-10-05]
"""

import argparse
import bisect
import json
import math
import os
import random
import sys
import time as _time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

H = 3600.0
D = 86400.0
MIN = 60.0
TZ_OFFSET_H = -5          # local time = UTC - 5 h, no daylight saving

WARDS = ('medicine', 'orthopaedics', 'icu', 'psychiatry', 'maternity')
CLINICAL_ROLES = ('physician', 'nurse', 'midwife', 'resident')

# ---------------------------------------------------------------- helpers


def clip(x, lo, hi):
    return lo if x < lo else hi if x > hi else x


def poisson(rng, lam):
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    l, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= l:
            return k
        k += 1


def poisson_times(rng, t0, t1, rate_per_h):
    """Event times of a Poisson process in [t0, t1)."""
    out = []
    if rate_per_h <= 0 or t1 <= t0:
        return out
    t = t0
    while True:
        t += rng.expovariate(rate_per_h / H)
        if t >= t1:
            return out
        out.append(t)


def lognorm(rng, median, sigma):
    return median * math.exp(rng.gauss(0, sigma))


def why(tag):
    """Ground truth for explaining findings: the kind of work an event belongs to."""
    def deco(fn):
        def wrapper(self, *a, **kw):
            old = self.why
            self.why = kw.pop('why', None) or tag
            try:
                return fn(self, *a, **kw)
            finally:
                self.why = old
        wrapper.__name__ = fn.__name__
        return wrapper
    return deco


class Staff:
    __slots__ = ('id', 'role', 'dept', 'system', 'pref', 'cap', 'activity', 'hired', 'term',
                 'own', 'vpn', 'float_icu', 'tele', 'parttime', 'ptdays', 'shifts', 'worked_days',
                 'last_end', 'former', 'idx', 'rot', 'ws_ip')

    def __init__(self, sid, role, dept, system):
        self.id, self.role, self.dept, self.system = sid, role, dept, system
        self.pref, self.cap, self.activity = 'any', 5, 1.0
        self.hired = self.term = None
        self.own = None
        self.vpn = None
        self.float_icu = False
        self.tele = None
        self.parttime = False
        self.ptdays = ()
        self.shifts = []
        self.worked_days = []
        self.last_end = -1e18
        self.former = False
        self.idx = 0
        self.rot = None
        self.ws_ip = None


class Shift:
    __slots__ = ('st', 'dept', 's', 'e', 'kind', 'remote', 'sessions', 'day', 'slot')

    def __init__(self, st, dept, s, e, kind, day, slot='', remote=False):
        self.st, self.dept, self.s, self.e, self.kind = st, dept, s, e, kind
        self.day, self.slot, self.remote = day, slot, remote
        self.sessions = []   # (start time, Sess), sorted


class Sess:
    __slots__ = ('id', 'ip', 'mobile')

    def __init__(self, sid, ip, mobile):
        self.id, self.ip, self.mobile = sid, ip, mobile


class Patient:
    __slots__ = ('mrn', 'sex', 'age', 'flag', 'weight', 'busy', 'consent', 'psych', 'encs',
                 'panel_doc', 'dialysis', 'ties')

    def __init__(self, mrn, sex, age):
        self.mrn, self.sex, self.age = mrn, sex, age
        self.flag = None
        self.weight = 1.0
        self.busy = -1e18
        self.consent = []   # (time, status)
        self.psych = False
        self.encs = []
        self.panel_doc = None
        self.dialysis = None
        self.ties = []


class Enc:
    __slots__ = ('id', 'pt', 'dept', 's', 'e', 'src', 'attending', 'labour_end', 'newborn',
                 'mother', 'resident', 'surgery', 'nurse')

    def __init__(self, eid, pt, dept, s, e, src):
        self.id, self.pt, self.dept, self.s, self.e, self.src = eid, pt, dept, s, e, src
        self.attending = None
        self.labour_end = None
        self.newborn = None
        self.mother = None
        self.resident = None
        self.surgery = None
        self.nurse = None


# ---------------------------------------------------------------- generator


class Hospital:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.days = args.days
        self.T = args.days * D
        d0 = datetime.strptime(args.start, '%Y-%m-%d')
        # t = 0 is local midnight of the start date
        self.start_utc = datetime(d0.year, d0.month, d0.day, tzinfo=timezone.utc) - timedelta(hours=TZ_OFFSET_H)
        self.epoch0 = self.start_utc.timestamp()
        self.wd0 = d0.weekday()
        self.rngs = {}
        self.events = []          # [t, seq, body-dict, misuse-tag, id]
        self.seq = 0
        self.care_rows = []       # (patient, actor, dept, start, end)   end None = open
        self.staff = []
        self.by_id = {}
        self.patients = []
        self.encs = []
        self.shifts_by_day = defaultdict(list)   # (dept, day) -> [Shift]
        self.remote_shifts = []
        # ground truth of benign work (for choosing misuse targets)
        self.touched = defaultdict(dict)         # actor -> {patient: last time}
        self.dept_seen = defaultdict(set)        # dept -> patients
        self.actor_rows = defaultdict(set)       # actor -> patients with a per-actor row
        self.worked_depts = defaultdict(set)
        self.orders = []
        self.counters = defaultdict(int)
        self.known = {}                          # actor -> {patient: relation}
        self.labels = []
        self.misuse_windows = defaultdict(list)  # actor -> [(s, e)]
        self.dept_rows = set()
        self.btg_until = {}
        self.why = 'other'
        self.sess_counter = 0
        self.enc_counter = 0

    # ------------------------------------------------------------ utilities
    def rng(self, name):
        r = self.rngs.get(name)
        if r is None:
            r = self.rngs[name] = random.Random('%d/%s' % (self.seed, name))
        return r

    def iso(self, t):
        ms = int(round((self.epoch0 + t) * 1000))
        s, msr = divmod(ms, 1000)
        g = _time.gmtime(s)
        return '%04d-%02d-%02dT%02d:%02d:%02d.%03dZ' % (g[0], g[1], g[2], g[3], g[4], g[5], msr)

    def weekday(self, day):
        return (self.wd0 + day) % 7

    def new_session(self, ip, mobile=False):
        self.sess_counter += 1
        r = self.rng('session-ids')
        return Sess('%08x-%04x' % (r.getrandbits(32), self.sess_counter & 0xffff), ip, mobile)

    # ------------------------------------------------------------ event emission
    def emit(self, t, st, action, patient=None, rtype=None, purpose='TREAT', sess=None,
             outcome=None, records=None, dest=None, attrs=None, dept=None, tag=None, source=None):
        """Append one access event. Benign events (tag None) also feed the ground truth."""
        if tag is None:
            if t < 0 or t >= self.T:
                return None
            if st.term is not None and t >= st.term:
                return None
            if st.hired is not None and t < st.hired:
                return None
            if patient is not None and st.own is not None and patient == st.own:
                return None
        actor = {'id': st.id}
        mobile = sess.mobile if sess is not None else False
        if not mobile:
            actor['role'] = st.role
            actor['dept'] = dept or st.dept
        if sess is not None:
            actor['ip'] = sess.ip
            actor['session'] = sess.id
        body = {'time': self.iso(t), 'kind': 'access', 'actor': actor,
                'source': source or ('ehr-mobile' if mobile else 'ehr')}
        body['action'] = action
        body['outcome'] = outcome or 'success'
        if patient is not None:
            body['patient'] = patient.mrn
        if rtype:
            body['resource'] = {'type': rtype}
        if purpose:
            body['purpose'] = purpose
        if records is not None:
            body['records'] = records
        if dest is not None:
            body['destination'] = dest
        if attrs:
            body['attrs'] = attrs
        ev = [t, self.seq, body, tag, None, self.why]
        self.seq += 1
        self.events.append(ev)
        if tag is None and patient is not None:
            self.touched[st.id][patient] = t
            self.dept_seen[dept or st.dept].add(patient)
            if outcome != 'denied':
                self.counters['benign_patient_events'] += 1
                kn = self.known.get(st.id)
                if kn and patient in kn:
                    self.counters['known_person_events_benign'] += 1
        return ev

    def emit_raw(self, t, body):
        ev = [t, self.seq, body, None, None, self.why]
        self.seq += 1
        self.events.append(ev)

    def sess_at(self, sh, t):
        ss = sh.sessions
        if not ss:
            return None
        i = bisect.bisect_right([x[0] for x in ss], t) - 1
        return ss[max(i, 0)][1]

    def ev(self, sh, t, action, patient=None, rtype=None, purpose='TREAT', **kw):
        """Emit an event of a shift's owner, in the shift's session at t."""
        return self.emit(t, sh.st, action, patient, rtype, purpose, self.sess_at(sh, t),
                         dept=sh.dept, **kw)

    def add_row(self, patient, actor, dept, s, e, rng, p_present):
        if rng.random() >= p_present:
            self.counters['care_rows_missing'] += 1
            return
        self.care_rows.append((patient, actor, dept, s, e))
        if actor is not None:
            self.actor_rows[actor].add(patient)
        else:
            self.dept_seen[dept].add(patient)
            self.dept_rows.add((dept, patient))

    # ------------------------------------------------------------ workforce
    PLAN = [
        # dept, role, count, system
        ('emergency', 'physician', 12, 'ed_phys'),
        ('emergency', 'nurse', 22, 'ward12'),
        ('icu', 'physician', 6, 'icu_phys'),
        ('icu', 'nurse', 20, 'ward12'),
        ('maternity', 'physician', 5, 'ob'),
        ('maternity', 'midwife', 13, 'ward12'),
        ('maternity', 'nurse', 12, 'ward12'),
        ('psychiatry', 'physician', 4, 'psych_phys'),
        ('psychiatry', 'nurse', 12, 'ward12'),
        ('psychiatry', 'psychologist', 3, 'office'),
        ('psychiatry', 'social_worker', 3, 'office'),
        ('orthopaedics', 'physician', 5, 'ortho_phys'),
        ('orthopaedics', 'nurse', 11, 'ward12'),
        ('rehab', 'therapist', 4, 'rehab'),
        ('medicine', 'physician', 7, 'med_phys'),
        ('medicine', 'nurse', 24, 'ward12'),
        ('outpatient', 'physician', 10, 'clinic'),
        ('outpatient', 'nurse', 7, 'clinic'),
        ('dialysis', 'physician', 1, 'office'),
        ('dialysis', 'nurse', 7, 'dialysis'),
        ('radiology', 'physician', 7, 'eight'),
        ('lab', 'lab_technologist', 10, 'eight'),
        ('pharmacy', 'pharmacist', 8, 'eight'),
        ('admissions', 'registrar', 9, 'eight'),
        ('billing', 'billing_clerk', 8, 'office'),
        ('clinical_research', 'researcher', 4, 'office'),
        ('float_pool', 'nurse', 9, 'float'),
        ('residency', 'resident', 9, 'resident'),
    ]
    DEPT_CODES = {}

    def build_staff(self):
        r = self.rng('staff')
        scale = self.args.staff / 250.0
        self.scale = scale
        ids = r.sample(range(10000, 99999), 2000)
        k = 0
        depts = sorted({p[0] for p in self.PLAN} | {'it'})
        self.DEPT_CODES = {d: i for i, d in enumerate(depts)}
        for dept, role, count, system in self.PLAN:
            n = max(1, int(round(count * scale)))
            for i in range(n):
                st = Staff('sb%05d' % ids[k], role, dept, system)
                k += 1
                st.activity = clip(math.exp(r.gauss(0, 0.45)), 0.4, 2.8)
                st.idx = i
                self._prefs(st, r, i, n)
                st.vpn = '100.64.%d.%d' % (r.randrange(1, 250), r.randrange(2, 250))
                self.staff.append(st)
        # new hires during the run (orientation over, they start on shift)
        hires = max(2, int(round(6 * scale)))
        hire_kinds = [('medicine', 'nurse', 'ward12'), ('emergency', 'nurse', 'ward12'),
                      ('icu', 'nurse', 'ward12'), ('admissions', 'registrar', 'eight'),
                      ('orthopaedics', 'nurse', 'ward12'), ('emergency', 'physician', 'ed_phys'),
                      ('pharmacy', 'pharmacist', 'eight'), ('maternity', 'midwife', 'ward12')]
        for j in range(hires):
            dept, role, system = hire_kinds[j % len(hire_kinds)]
            st = Staff('sb%05d' % ids[k], role, dept, system)
            k += 1
            st.activity = clip(math.exp(r.gauss(0, 0.45)), 0.4, 2.8)
            self._prefs(st, r, r.randrange(50), 50)
            day = 1 + (j * (self.days - 2)) // hires + r.randrange(0, 2)
            st.hired = day * D + 6.5 * H
            st.vpn = '100.64.%d.%d' % (r.randrange(1, 250), r.randrange(2, 250))
            self.staff.append(st)
        # leavers during the run and former staff (left before it)
        working = [s for s in self.staff if s.hired is None and s.system not in ('resident',)]
        leavers = r.sample(working, max(3, int(round(8 * scale))))
        for j, st in enumerate(leavers):
            day = 1 + (j * (self.days - 4)) // len(leavers) + r.randrange(0, 2)
            st.term = day * D + r.uniform(8 * H, 20 * H)
        n_former = max(5, int(round(20 * scale)))
        for j in range(n_former):
            dept, role, count, system = r.choice([p for p in self.PLAN if p[2] >= 4])
            st = Staff('sb%05d' % ids[k], role, dept, system)
            k += 1
            st.former = True
            st.term = -r.uniform(1 * D, 120 * D)
            st.hired = st.term - r.uniform(200 * D, 3000 * D)
            st.activity = 1.0
            st.vpn = '100.64.%d.%d' % (r.randrange(1, 250), r.randrange(2, 250))
            self.staff.append(st)
        self.by_id = {s.id: s for s in self.staff}
        # service accounts
        self.svc = {}
        for sid in ('svc-dw', 'svc-claims', 'svc-hie'):
            st = Staff(sid, 'service', 'it', 'service')
            self.svc[sid] = st
            self.by_id[sid] = st
        # telehealth physicians (fixed evening Mon..Thu)
        ops = [s for s in self.staff if s.dept == 'outpatient' and s.role == 'physician' and not s.former]
        for i, st in enumerate(ops[:4]):
            st.tele = i

    def _prefs(self, st, r, i, n):
        sysm = st.system
        if sysm == 'ward12':
            x = r.random()
            st.pref = 'day' if x < 0.5 else 'night' if x < 0.75 else 'rot'
            st.parttime = r.random() < 0.15
            st.cap = 2 if st.parttime else 3
        elif sysm == 'float':
            st.pref = r.choice(['day', 'day', 'night', 'rot'])
            st.cap = 3
            st.float_icu = r.random() < 0.5
        elif sysm == 'ed_phys':
            st.pref, st.cap = 'any', 4
        elif sysm == 'icu_phys':
            st.pref = 'day' if i < max(1, int(round(n * 0.66))) else 'night'
            st.cap = 5
        elif sysm == 'ob':
            st.pref, st.cap = 'day', 3
        elif sysm == 'med_phys':
            st.pref = 'night' if i < max(1, int(round(n * 0.28))) else 'day'
            st.cap = 4 if st.pref == 'night' else 5
        elif sysm in ('ortho_phys', 'psych_phys', 'rehab'):
            st.pref, st.cap = 'day', 5
        elif sysm == 'eight':
            x = (i + 0.5) / n
            st.pref = 'day' if x < 0.5 else 'eve' if x < 0.78 else 'night'
            st.parttime = r.random() < 0.2
            st.cap = 3 if st.parttime else 5
        elif sysm == 'dialysis':
            st.pref, st.cap = 'day', 4
        elif sysm == 'clinic':
            st.pref = 'day'
            st.parttime = r.random() < 0.25
            st.cap = 3 if st.parttime else (4 if st.role == 'physician' else 5)
        elif sysm == 'office':
            st.pref = 'day'
            st.parttime = r.random() < 0.3
            if st.parttime:
                st.ptdays = tuple(sorted(r.sample(range(5), r.choice([2, 3]))))
        elif sysm == 'resident':
            st.pref = 'day'

    # ------------------------------------------------------------ rota
    def slots(self, system, dept, role):
        sc = self.scale

        def q(x):
            return max(1, int(round(x * sc))) if x > 0 else 0

        def wk(wd, we):
            return (q(wd),) * 5 + (q(we),) * 2
        if system == 'ward12':
            req = {('emergency', 'nurse'): (5, 5, 4, 4), ('icu', 'nurse'): (5, 4, 4, 4),
                   ('maternity', 'midwife'): (3, 3, 3, 3), ('maternity', 'nurse'): (4, 4, 3, 3),
                   ('psychiatry', 'nurse'): (3, 3, 2, 2), ('orthopaedics', 'nurse'): (3, 2, 2, 2),
                   ('medicine', 'nurse'): (6, 6, 5, 5)}[(dept, role)]
            return [('day', 7, 12, wk(req[0], req[1]), 'day'), ('night', 19, 12, wk(req[2], req[3]), 'night')]
        if system == 'ed_phys':
            return [('A', 7, 10, wk(1, 1), 'day'), ('B', 12, 10, wk(2, 1), 'day'),
                    ('C', 17, 10, wk(2, 2), 'night'), ('D', 22, 10, wk(1, 1), 'night')]
        if system == 'icu_phys':
            return [('day', 7, 12, wk(2, 1), 'day'), ('night', 19, 12, wk(1, 1), 'night')]
        if system == 'ob':
            return [('24h', 7, 24, wk(1, 1), 'day'), ('clinic', 7, 10, wk(1, 0), 'day')]
        if system == 'med_phys':
            return [('day', 7, 10, wk(4, 2), 'day'), ('night', 19, 12, wk(1, 1), 'night')]
        if system == 'ortho_phys':
            return [('day', 7, 10, wk(4, 1), 'day')]
        if system == 'psych_phys':
            return [('day', 8, 9, wk(3, 1), 'day')]
        if system == 'rehab':
            return [('day', 7.5, 8.5, wk(3, 1), 'day')]
        if system == 'eight':
            req = {'radiology': (2, 1, 1, 1, 1, 1), 'lab': (3, 2, 2, 1, 2, 1),
                   'pharmacy': (3, 2, 2, 1, 1, 1), 'admissions': (3, 1, 2, 1, 1, 1)}[dept]
            return [('day', 7, 8, wk(req[0], req[1]), 'day'), ('eve', 15, 8, wk(req[2], req[3]), 'eve'),
                    ('night', 23, 8, wk(req[4], req[5]), 'night')]
        if system == 'dialysis':
            return [('day', 5.75, 10.5, (q(4),) * 6 + (0,), 'day')]
        if system == 'clinic':
            if role == 'physician':
                return [('day', 8, 9, (q(7),) * 5 + (0, 0), 'day')]
            return [('day', 7.75, 9.25, (q(6),) * 5 + (0, 0), 'day')]
        raise ValueError(system)

    def pref_ok(self, st, kind):
        p = st.pref
        if p in ('any', 'rot'):
            return True
        if p == 'day':
            return kind == 'day'
        if p == 'night':
            return kind == 'night'
        if p == 'eve':
            return kind == 'eve'
        return False

    def can_work(self, st, S, E, day, rest_h, maxrun, cap_extra=0):
        if st.hired is not None and st.hired > S:
            return False
        if st.term is not None and st.term <= S:
            return False
        if st.last_end + rest_h * H > S:
            return False
        wd = st.worked_days
        n7 = sum(1 for x in wd if x > day - 7)
        if n7 >= st.cap + cap_extra:
            return False
        run = 0
        dd = day - 1
        while dd in wd[-8:]:
            run += 1
            dd -= 1
        if run >= maxrun:
            return False
        return True

    def add_shift(self, st, dept, S, dur_h, kind, day, slot, r, remote=False):
        s = S - r.uniform(1, 14) * MIN
        e = S + dur_h * H + min(r.expovariate(1 / (18 * MIN)), 100 * MIN)
        if st.term is not None and e > st.term:
            e = st.term
        if e <= s:
            return None
        sh = Shift(st, dept, s, e, kind, day, slot, remote)
        st.shifts.append(sh)
        st.worked_days.append(day)
        st.last_end = S + dur_h * H
        self.shifts_by_day[(dept, day)].append(sh)
        self.worked_depts[st.id].add(dept)
        return sh

    def build_rota(self):
        r = self.rng('rota')
        groups = defaultdict(list)
        for st in self.staff:
            if st.former:
                continue
            groups[(st.dept, st.role, st.system)].append(st)
        floats = [s for s in self.staff if s.system == 'float' and not s.former]
        residents = [s for s in self.staff if s.system == 'resident']
        rot_depts = ['medicine', 'emergency', 'icu', 'orthopaedics', 'psychiatry', 'maternity', 'outpatient']
        for i, st in enumerate(residents):
            st.rot = [rot_depts[(i + w) % len(rot_depts)] for w in range(-1, self.days // 7 + 3)]
        for day in range(-1, self.days + 1):
            wdy = self.weekday(day)
            needs = []
            for (dept, role, system), members in sorted(groups.items()):
                if system in ('office', 'float', 'resident', 'service'):
                    continue
                rest = 8 if system == 'eight' else 10
                maxrun = 7 if system in ('icu_phys', 'med_phys') else 5 if system in ('eight', 'clinic', 'dialysis', 'ortho_phys', 'psych_phys', 'rehab') else 4
                for slot, sh_h, dur, req, kind in self.slots(system, dept, role):
                    S = day * D + sh_h * H
                    want = req[wdy]
                    if want <= 0:
                        continue
                    cands = [m for m in members if self.pref_ok(m, kind) and
                             self.can_work(m, S, S + dur * H, day, max(rest, dur if dur >= 24 else 0), maxrun)]
                    cands.sort(key=lambda m: sum(1 for x in m.worked_days if x > day - 7) / m.cap + r.uniform(0, 0.45))
                    got = 0
                    for m in cands[:want]:
                        self.add_shift(m, dept, S, dur, kind, day, slot, r)
                        got += 1
                        if dur >= 24:
                            m.last_end = S + dur * H + 12 * H
                    if got < want:
                        needs.append((dept, role, system, members, S, dur, kind, slot, want - got, rest, maxrun))
            # float pool covers nursing gaps, then overtime (called in)
            for dept, role, system, members, S, dur, kind, slot, k, rest, maxrun in needs:
                if role == 'nurse' and dept in ('medicine', 'orthopaedics', 'psychiatry', 'icu', 'emergency', 'maternity'):
                    fc = [f for f in floats if self.pref_ok(f, kind) and self.can_work(f, S, S + dur * H, day, 11, 4)
                          and (f.float_icu or dept not in ('icu', 'emergency'))]
                    fc.sort(key=lambda m: len(m.worked_days) + r.uniform(0, 1.5))
                    for f in fc[:k]:
                        self.add_shift(f, dept, S, dur, kind, day, slot, r)
                        self.counters['float_shifts'] += 1
                        k -= 1
                if k > 0:
                    oc = [m for m in members if self.pref_ok(m, kind) and
                          self.can_work(m, S, S + dur * H, day, rest, maxrun + 1, cap_extra=1)]
                    r.shuffle(oc)
                    for m in oc[:k]:
                        self.add_shift(m, dept, S, dur, kind, day, slot, r)
                        self.counters['called_in_shifts'] += 1
                        self.counters['called_in:%s/%s' % (dept, role)] += 1
                        k -= 1
                if k > 0:
                    self.counters['unfilled_shifts'] += k
            # office hours
            for (dept, role, system), members in sorted(groups.items()):
                if system != 'office' or wdy >= 5:
                    continue
                for m in members:
                    if m.parttime:
                        if wdy not in m.ptdays or r.random() < 0.05:
                            continue
                    elif r.random() < 0.08:
                        continue
                    S = day * D + (8 + r.uniform(-0.3, 0.4)) * H
                    if self.can_work(m, S, S + 9 * H, day, 8, 6):
                        self.add_shift(m, dept, S, r.uniform(8.3, 9.2), 'day', day, 'office', r)
            # residents: weekly rotation, week starts Monday
            for m in residents:
                week = (day + self.wd0) // 7 + 1
                dept = m.rot[min(max(week, 0), len(m.rot) - 1)]
                if dept == 'emergency':
                    if r.random() < 0.68:
                        slot = r.choice([(7, 10), (12, 10), (17, 10)])
                        S = day * D + slot[0] * H
                        if self.can_work(m, S, S + slot[1] * H, day, 10, 5, cap_extra=99):
                            self.add_shift(m, dept, S, slot[1], 'day' if slot[0] < 16 else 'night', day, 'res', r)
                elif dept == 'outpatient':
                    if wdy < 5:
                        S = day * D + 8 * H
                        self.add_shift(m, dept, S, 9, 'day', day, 'res', r)
                else:
                    work = wdy < 5 or (wdy == 5 + (m.idx % 2))
                    if work and r.random() < 0.95:
                        S = day * D + 6.5 * H
                        if self.can_work(m, S, S + 11.5 * H, day, 10, 7, cap_extra=99):
                            self.add_shift(m, dept, S, 11.5, 'day', day, 'res', r)
        # sessions and logins for every shift
        self.make_sessions()

    def ws_ip(self, dept, r):
        c = self.DEPT_CODES.get(dept, 0)
        n = r.randrange(0, 40)
        return '10.%d.%d.%d' % (30 + c, n // 20, 20 + n % 20)

    def make_sessions(self):
        r = self.rng('sessions')
        for st in self.staff:
            for sh in st.shifts:
                t = sh.s
                while t < sh.e:
                    if sh.remote:
                        sess = self.new_session(st.vpn)
                    else:
                        mobile = r.random() < 0.027
                        ip = '10.90.%d.%d' % (r.randrange(0, 16), r.randrange(2, 250)) if mobile else self.ws_ip(sh.dept, r)
                        sess = self.new_session(ip, mobile)
                    sh.sessions.append((t, sess))
                    t += r.uniform(2.5, 5.5) * H

    @why('shift-login')
    def logins(self):
        for st in self.staff:
            for sh in st.shifts:
                for t, sess in sh.sessions:
                    self.emit(t, st, 'login', None, None, None, sess, dept=sh.dept)

    def duty(self, dept, t, roles=None, remote=False):
        day = int(math.floor(t / D))
        out = []
        for d in (day - 1, day):
            for sh in self.shifts_by_day.get((dept, d), ()):
                if sh.s <= t < sh.e and (roles is None or sh.st.role in roles) and sh.remote == remote:
                    out.append(sh)
        return out

    # ------------------------------------------------------------ patients
    def build_patients(self):
        r = self.rng('patients')
        n = self.args.patients
        self.mrn_next = 4100001
        for i in range(n):
            p = Patient(self.next_mrn(), r.choice('FM'), int(clip(r.gauss(47, 22), 0, 99)))
            if r.random() < 0.13:
                p.weight = 4.0
            self.patients.append(p)
        # outpatient panels
        ops = [s for s in self.staff if s.dept == 'outpatient' and s.role == 'physician' and not s.former]
        self.panels = defaultdict(list)
        pool = r.sample(self.patients, min(len(self.patients), int(300 * len(ops))))
        for i, p in enumerate(pool):
            doc = ops[i % len(ops)]
            p.panel_doc = doc.id
            self.panels[doc.id].append(p)
        # dialysis patients: Mon/Wed/Fri or Tue/Thu/Sat, morning or afternoon
        nd = max(12, int(round(84 * self.scale)))
        cand = [p for p in self.patients if p.age >= 30]
        self.dialysis = r.sample(cand, nd)
        for i, p in enumerate(self.dialysis):
            p.dialysis = (i % 2, (i // 2) % 2)   # (MWF=0 / TTS=1, am=0 / pm=1)
        # flags
        nflag = int(round(0.012 * n))
        rest = [p for p in self.patients if p.dialysis is None]
        flagged = r.sample(rest, nflag)
        for j, p in enumerate(flagged):
            p.flag = 'vip' if j % 10 < 4 else 'restricted'
            p.weight = 3.0
        # consent to research (HRESCH)
        rc = self.rng('consent')
        self.consent_rows = []
        for p in self.patients:
            base = 0.6 if p.dialysis is not None else 0.25
            if rc.random() < base:
                tg = -rc.uniform(10 * D, 700 * D)
                p.consent.append((tg, 'granted'))
                if rc.random() < 0.07:
                    tw = rc.uniform(tg + D, self.T) if rc.random() < 0.5 else rc.uniform(tg + D, -D)
                    if tw > tg:
                        p.consent.append((tw, 'withdrawn'))
            elif rc.random() < 0.02:
                p.consent.append((rc.uniform(0, self.T), 'granted'))

    def next_mrn(self):
        m = 'MRN-%07d' % self.mrn_next
        self.mrn_next += 1
        return m

    def consent_at(self, p, t):
        st = None
        for tt, s in p.consent:
            if tt <= t:
                st = s
        return st

    def pick_patient(self, r, t, pred=None, tries=60):
        for _ in range(tries):
            x = r.random() * self.pt_cum[-1]
            p = self.patients[bisect.bisect_left(self.pt_cum, x)]
            if p.busy > t or p.dialysis is not None and r.random() < 0.7:
                continue
            if pred is not None and not pred(p):
                continue
            return p
        return None

    def build_ties(self):
        """Staff's own records, relatives and neighbours (the hospital's identity matching)."""
        r = self.rng('ties')
        self.links = []
        unflagged = [p for p in self.patients if p.flag is None]
        own_taken = set()
        emp_flag = []
        for st in self.staff:
            if st.former:
                continue
            if r.random() < 0.30:
                while True:
                    p = r.choice(unflagged)
                    if p not in own_taken:
                        break
                own_taken.add(p)
                st.own = p
                if r.random() < 0.25:
                    emp_flag.append(p)
        for p in emp_flag:
            p.flag = 'employee'
        staff_by_own = {st.own: st for st in self.staff if st.own is not None}
        for st in self.staff:
            if st.former:
                continue
            kn = {}
            nf = r.choices([0, 1, 2, 3, 4], [30, 30, 20, 12, 8])[0]
            for _ in range(nf):
                p = r.choice(unflagged)
                if p is st.own or p in kn:
                    continue
                rel = 'household' if r.random() < 0.2 else 'family'
                kn[p] = rel
            nn = r.choices([0, 1, 2], [60, 30, 10])[0]
            for _ in range(nn):
                p = r.choice(unflagged)
                if p is st.own or p in kn:
                    continue
                kn[p] = 'neighbour'
            if r.random() < 0.04:
                others = [o for o in self.staff if o is not st and o.own is not None and not o.former]
                if others:
                    o = r.choice(others)
                    kn[o.own] = 'family'
            for p, rel in kn.items():
                self.links.append((st.id, p.mrn, rel))
                p.ties.append(st.id)
            # coworkers of the same department who are patients
            full = dict(kn)
            self.known[st.id] = full
        self.staff_by_own = staff_by_own
        # staff and their families use their own hospital more than the average resident
        for st in self.staff:
            if st.own is not None:
                st.own.weight = max(st.own.weight, 2.5)
        for p in self.patients:
            if p.ties and p.weight < 2.5:
                p.weight = 2.5
        self.pt_cum = []
        c = 0.0
        for p in self.patients:
            c += p.weight
            self.pt_cum.append(c)

    def coworker_records(self, st):
        return [o.own for o in self.staff if o is not st and not o.former and o.own is not None and o.dept == st.dept]

    # ------------------------------------------------------------ encounters
    def new_enc(self, p, dept, s, e, src):
        self.enc_counter += 1
        en = Enc(self.enc_counter, p, dept, s, e, src)
        self.encs.append(en)
        p.encs.append(en)
        if dept != 'outpatient':
            p.busy = max(p.busy, e)
        if dept == 'psychiatry':
            p.psych = True
        return en

    def build_encounters(self):
        r = self.rng('encounters')
        diurnal = [0.45, 0.38, 0.32, 0.28, 0.26, 0.3, 0.45, 0.7, 1.0, 1.25, 1.35, 1.38, 1.35, 1.3,
                   1.3, 1.28, 1.25, 1.25, 1.22, 1.15, 1.05, 0.9, 0.72, 0.56]
        mean = sum(diurnal) / 24
        diurnal = [x / mean for x in diurnal]
        base_ed = 105 * self.scale
        t_from = -14
        pending = []  # (time, kind, patient, extra)
        for day in range(t_from, self.days):
            wdy = self.weekday(day)
            dayf = math.exp(r.gauss(0, 0.1)) * (0.92 if wdy >= 5 else 1.0)
            for h in range(24):
                lam = base_ed / 24 * diurnal[h] * dayf
                for _ in range(poisson(r, lam)):
                    pending.append((day * D + h * H + r.uniform(0, H), 'ed'))
            if wdy < 5:
                for _ in range(poisson(r, 4 * self.scale)):
                    pending.append((day * D + r.uniform(6.5, 10) * H, 'ortho'))
                for _ in range(poisson(r, 1 * self.scale)):
                    pending.append((day * D + r.uniform(10, 16) * H, 'direct'))
            for _ in range(poisson(r, 8.5 * self.scale)):
                if wdy < 5 and r.random() < 0.3:
                    pending.append((day * D + r.uniform(7, 9.5) * H, 'sched_birth'))
                else:
                    pending.append((day * D + r.uniform(0, 24) * H, 'labour'))
            for _ in range(poisson(r, 0.4 * self.scale)):
                pending.append((day * D + r.uniform(9, 17) * H, 'psych_direct'))
        pending.sort()
        ward_mix = [('medicine', 0.45), ('icu', 0.14), ('orthopaedics', 0.17), ('psychiatry', 0.16), ('maternity', 0.08)]
        for t, kind in pending:
            if kind == 'ed':
                p = self.pick_patient(r, t)
                if p is None:
                    continue
                stay = clip(lognorm(r, 4.5 * H, 0.5), 0.6 * H, 30 * H)
                ed = self.new_enc(p, 'emergency', t, t + stay, 'ed')
                x = r.random()
                if p.flag == 'restricted' and x < 0.5:
                    x = 0.0
                if x < 0.16:
                    y, c = r.random(), 0.0
                    ward = 'medicine'
                    for w, pr in ward_mix:
                        c += pr
                        if y < c:
                            ward = w
                            break
                    if p.flag == 'restricted' and r.random() < 0.6:
                        ward = 'psychiatry'
                    if ward == 'maternity' and not (p.sex == 'F' and 16 <= p.age <= 45):
                        ward = 'medicine'
                    self.admit(r, p, ward, t + stay, 'ed', ed)
            elif kind == 'ortho':
                p = self.pick_patient(r, t, lambda q: q.age >= 35)
                if p is None:
                    continue
                self.admit(r, p, 'orthopaedics', t, 'elective', None)
            elif kind == 'direct':
                p = self.pick_patient(r, t, lambda q: q.age >= 40)
                if p:
                    self.admit(r, p, 'medicine', t, 'direct', None)
            elif kind in ('labour', 'sched_birth'):
                p = self.pick_patient(r, t, lambda q: q.sex == 'F' and 18 <= q.age <= 44)
                if p:
                    self.admit(r, p, 'maternity', t, kind, None)
            elif kind == 'psych_direct':
                p = self.pick_patient(r, t, lambda q: q.age >= 16)
                if p:
                    self.admit(r, p, 'psychiatry', t, 'direct', None)
        # outpatient appointments and dialysis sessions are made with the rota
        self.encs.sort(key=lambda e: e.s)
        self.ward_encs = defaultdict(list)
        for en in self.encs:
            self.ward_encs[en.dept].append(en)

    def admit(self, r, p, ward, t, src, prev):
        if ward == 'medicine':
            stay = lognorm(r, 72 * H, 0.6)
        elif ward == 'icu':
            stay = lognorm(r, 65 * H, 0.7)
        elif ward == 'orthopaedics':
            stay = lognorm(r, 58 * H, 0.45)
        elif ward == 'psychiatry':
            stay = lognorm(r, 150 * H, 0.5)
        else:
            csec = src == 'sched_birth' or r.random() < 0.18
            stay = lognorm(r, 80 * H if csec else 50 * H, 0.35)
        stay = clip(stay, 6 * H, 40 * D)
        en = self.new_enc(p, ward, t, t + stay, src)
        if ward == 'orthopaedics':
            en.surgery = t + (r.uniform(0.5, 3) * H if src == 'elective' else r.uniform(6, 30) * H)
        if ward == 'maternity':
            labour = r.uniform(1.2, 2.5) * H if src == 'sched_birth' else clip(lognorm(r, 9 * H, 0.5), 1.5 * H, 30 * H)
            en.labour_end = t + min(labour, stay - 2 * H)
            baby = Patient(self.next_mrn(), r.choice('FM'), 0)
            self.patients.append(baby)
            nb = self.new_enc(baby, 'maternity', en.labour_end, en.e, 'birth')
            nb.mother = en
            en.newborn = nb
        if ward == 'icu' and r.random() < 0.72:
            self.admit(r, p, 'medicine', en.e, 'transfer', en)
        return en

    # ------------------------------------------------------------ visit content
    NURSE_ITEMS = [('read', 'Observation', 3), ('create', 'Observation', 3), ('read', 'MedicationRequest', 2),
                   ('create', 'MedicationAdministration', 2), ('read', 'DocumentReference', 1),
                   ('create', 'DocumentReference', 0.6), ('read', 'DiagnosticReport', 0.8), ('read', 'CarePlan', 0.5)]
    PHYS_ITEMS = [('read', 'Observation', 3), ('read', 'DiagnosticReport', 2.5), ('read', 'DocumentReference', 2.5),
                  ('read', 'MedicationRequest', 1.5), ('read', 'ImagingStudy', 0.6), ('read', 'Condition', 0.7)]

    def pick_items(self, r, items, k):
        w = [x[2] for x in items]
        return [items[i] for i in r.choices(range(len(items)), w, k=k)]

    def visit(self, sh, t, p, r, role_items, n_min, n_max, first='Encounter', purpose='TREAT', note_p=0.0,
              gap=(6, 45)):
        """A chart visit: a read of the chart, a few events seconds apart. Returns the end time."""
        if t >= sh.e or t < sh.s:
            return t
        st = sh.st
        first_purpose = purpose
        if purpose == 'TREAT' and p.flag == 'restricted' and p not in self.actor_rows[st.id] \
                and (sh.dept, p) not in self.dept_rows \
                and sh.dept not in ('psychiatry', 'lab', 'radiology', 'pharmacy', 'admissions', 'billing'):
            # a restricted record without an assignment: break the glass; access holds for 8 hours
            if self.btg_until.get((st.id, p), -1) < t:
                first_purpose = 'ETREAT'
                self.btg_until[(st.id, p)] = t + 8 * H
                self.counters['benign_btg_restricted'] += 1
        self.ev(sh, t, 'read', p, first, first_purpose)
        n = r.randint(n_min, n_max)
        for a, rt, _ in self.pick_items(r, role_items, n):
            t += r.uniform(*gap)
            outcome = None
            if a == 'read' and rt == 'DocumentReference' and p.psych and sh.dept != 'psychiatry' and r.random() < 0.05:
                outcome = 'denied'
            elif a == 'read' and r.random() < 0.0007:
                outcome = 'denied'
            if outcome == 'denied':
                self.counters['benign_denied'] += 1
            self.ev(sh, t, a, p, rt, purpose, outcome=outcome)
        if note_p and r.random() < note_p:
            t += r.uniform(60, 400)
            self.ev(sh, t, 'create', p, 'DocumentReference', purpose)
        return t

    @why('order-entry')
    def order(self, sh, t, p, performer, rtype, r, in_feed=0.9, origin='inpatient'):
        """Order entry; returns the order time. Not every order reaches the audit feed, and
        the older order module leaves the performing department out."""
        self.orders.append((t, p, performer, sh.st.id))
        self.dept_seen[performer].add(p)
        if r.random() < in_feed:
            if r.random() < 0.85:
                attrs = {'performer_dept': performer, 'order_class': 'stat' if r.random() < 0.2 else 'routine'}
            else:
                attrs = {'order_class': 'routine', 'order_module': 'legacy-cpoe'}
            self.ev(sh, t, 'create', p, rtype, 'TREAT', attrs=attrs)
            self.counters['orders_in_feed'] += 1
        else:
            self.counters['orders_not_in_feed'] += 1
        return t

    # ------------------------------------------------------------ service requests
    @why('lab-verification')
    def serve_lab(self, t, p, r, stat=False, delay=None):
        t = t + (delay if delay is not None else (r.uniform(25, 60) if stat else r.uniform(40, 110)) * MIN)
        cands = self.duty('lab', t)
        if not cands:
            return
        sh = r.choice(cands)
        self.ev(sh, t, 'read', p, 'ServiceRequest', 'TREAT')
        t += r.uniform(20, 120)
        self.ev(sh, t, 'update', p, 'Observation', 'TREAT')
        if r.random() < 0.4:
            t += r.uniform(5, 40)
            self.ev(sh, t, 'read', p, 'Observation', 'TREAT')
        if r.random() < 0.05:
            t += r.uniform(30, 120)
            self.ev(sh, t, 'read', p, 'Encounter', 'TREAT')
        if r.random() < 0.3:
            t += r.uniform(5, 60)
            self.ev(sh, t, 'read', p, 'DiagnosticReport', 'TREAT')

    @why('radiology-read')
    def serve_imaging(self, t, p, r, delay_min):
        t = t + r.uniform(*delay_min) * MIN
        cands = self.duty('radiology', t)
        if not cands:
            return
        sh = r.choice(cands)
        self.ev(sh, t, 'read', p, 'ServiceRequest', 'TREAT')
        t += r.uniform(20, 90)
        self.ev(sh, t, 'read', p, 'ImagingStudy', 'TREAT')
        if r.random() < 0.4:
            t += r.uniform(20, 200)
            self.ev(sh, t, 'read', p, 'DiagnosticReport', 'TREAT')
        t += r.uniform(120, 900)
        self.ev(sh, t, 'create', p, 'DiagnosticReport', 'TREAT')

    @why('pharmacy-verification')
    def serve_pharmacy(self, t, p, r):
        t = t + r.uniform(5, 40) * MIN
        cands = self.duty('pharmacy', t)
        if not cands:
            return
        sh = r.choice(cands)
        self.ev(sh, t, 'read', p, 'MedicationRequest', 'TREAT')
        if r.random() < 0.6:
            t += r.uniform(10, 60)
            self.ev(sh, t, 'read', p, 'Observation', 'TREAT')
        t += r.uniform(10, 90)
        self.ev(sh, t, 'update', p, 'MedicationRequest', 'TREAT')

    @why('consult')
    def consult(self, t, p, dept, r, from_dept):
        """A consult by a physician of `dept` (on shift, else on call from home at night)."""
        t2 = t + r.uniform(0.5, 5) * H
        cands = self.duty(dept, t2, ('physician',))
        sh = None
        if cands:
            sh = r.choice(cands)
        elif dept in ('orthopaedics', 'psychiatry'):
            sh = self.oncall_shift(dept, t2, r)
        if sh is None:
            return
        self.visit(sh, t2, p, r, self.PHYS_ITEMS, 3, 7, note_p=0.9)
        self.add_row(p, sh.st.id, dept, t2, t2 + 3 * D, r, 0.6)
        self.counters['consults'] += 1

    @why('on-call-login')
    def oncall_shift(self, dept, t, r):
        """A physician on call from home answering a call: a short remote 'shift' with a VPN login."""
        docs = [s for s in self.staff if s.dept == dept and s.role == 'physician' and not s.former
                and (s.term is None or s.term > t) and (s.hired is None or s.hired <= t)]
        if not docs:
            return None
        day = int(math.floor((t - 12 * H) / D))
        doc = docs[(day * 3 + 1) % len(docs)]
        # not while on a shift of their own
        for sh in doc.shifts:
            if sh.s - H <= t <= sh.e + H:
                return None
        sh = Shift(doc, dept, t - r.uniform(1, 4) * MIN, t + r.uniform(25, 50) * MIN, 'oncall', day, 'oncall', True)
        sess = self.new_session(doc.vpn)
        sh.sessions.append((sh.s, sess))
        self.emit(sh.s, doc, 'login', None, None, None, sess, dept=dept)
        self.remote_shifts.append(sh)
        self.counters['oncall_calls'] += 1
        return sh

    # ------------------------------------------------------------ ward work
    @why('ward-nurse-visit')
    def gen_wards(self):
        r = self.rng('wards')
        for dept in WARDS:
            encs = self.ward_encs[dept]
            prev_nurse = {}
            for day in range(-1, self.days):
                for half in (0, 1):
                    p0 = day * D + (7 if half == 0 else 19) * H
                    p1 = p0 + 12 * H
                    if p1 <= 0:
                        continue
                    active = [en for en in encs if en.s < p1 and en.e > p0]
                    roles = ('nurse', 'midwife')
                    nurses = [sh for sh in self.duty(dept, p0 + 1.5 * H, roles)]
                    if not nurses:
                        continue
                    load = defaultdict(int)
                    assign = {}
                    # continuity first
                    for en in active:
                        pn = prev_nurse.get(en.id)
                        if pn is not None:
                            for sh in nurses:
                                if sh.st is pn:
                                    assign[en.id] = sh
                                    load[sh] += 1
                                    break
                    for en in active:
                        if en.id in assign:
                            continue
                        pool = nurses
                        if dept == 'maternity':
                            labouring = en.labour_end is not None and en.labour_end > p0 and en.s < p1
                            mw = [sh for sh in nurses if sh.st.role == 'midwife']
                            nn = [sh for sh in nurses if sh.st.role == 'nurse']
                            if en.mother is not None and en.mother.id in assign:
                                assign[en.id] = assign[en.mother.id]
                                load[assign[en.id]] += 1
                                continue
                            # labour with a midwife; mother-baby couplets with whoever has the fewest
                            pool = (mw or nurses) if labouring else nurses
                        sh = min(pool, key=lambda x: (load[x], r.random()))
                        assign[en.id] = sh
                        load[sh] += 1
                    rate = {'medicine': 0.75, 'orthopaedics': 0.7, 'icu': 1.5, 'psychiatry': 0.35, 'maternity': 0.55}[dept]
                    if half == 1:
                        rate *= 0.6
                    for en in active:
                        self.why = 'ward-nurse-assigned-patient'
                        sh = assign[en.id]
                        prev_nurse[en.id] = sh.st
                        p = en.pt
                        w0, w1 = max(sh.s, en.s, p0 - 20 * MIN), min(sh.e, en.e, p1 + 40 * MIN)
                        if w1 <= w0:
                            continue
                        self.add_row(p, sh.st.id, dept, max(p0, en.s), min(p1 + H, en.e + H), r, 0.85)
                        rr = rate * math.sqrt(sh.st.activity)
                        if dept == 'maternity' and en.labour_end and en.labour_end > w0:
                            rr = 2.0
                        times = poisson_times(r, w0, w1, rr)
                        if r.random() < 0.9:
                            times.insert(0, w0 + r.uniform(5, 40) * MIN)
                        for t in times:
                            if t < w1:
                                self.visit(sh, t, p, r, self.NURSE_ITEMS, 1, 5)
                        # delivery: newborn record created by the midwife
                        if en.newborn is not None and w0 <= en.labour_end < w1:
                            self.ev(sh, en.labour_end, 'create', en.newborn.pt, 'Patient', 'TREAT')
                            self.ev(sh, en.labour_end + r.uniform(60, 600), 'create', p, 'Procedure', 'TREAT')
                    # census list and colleague covers
                    for sh in nurses:
                        self.why = 'ward-nurse-census'
                        t = sh.s + r.uniform(10, 40) * MIN
                        self.ev(sh, t, 'search', None, 'Patient', 'TREAT', attrs={'list': 'unit-census'})
                        if r.random() < 0.15:
                            self.ev(sh, t + 60, 'print', None, 'List', 'TREAT', records=max(1, len(active)),
                                    dest='printer:sbrh/%s-station-%d' % (dept, r.randrange(1, 4)))
                        self.why = 'ward-nurse-colleague-cover'
                        others = [en for en in active if assign[en.id] is not sh]
                        for _ in range(poisson(r, 1.3 * sh.st.activity)):
                            if not others:
                                break
                            en = r.choice(others)
                            t = r.uniform(max(sh.s, en.s), min(sh.e, en.e)) if min(sh.e, en.e) > max(sh.s, en.s) else None
                            if t is not None:
                                self.visit(sh, t, en.pt, r, self.NURSE_ITEMS, 1, 3)
                                self.counters['nurse_covers'] += 1
                        if dept == 'emergency' and r.random() < 0.12 or dept in ('icu', 'maternity') and r.random() < 0.04:
                            self.benign_btg(sh, r, active)
        self.gen_ward_physicians()

    @why('benign-break-glass')
    def benign_btg(self, sh, r, active):
        cand = [en for en in active if en.s < sh.e and en.e > sh.s]
        if not cand:
            return
        en = r.choice(cand)
        t0 = max(sh.s, en.s) + r.uniform(0, min(sh.e, en.e) - max(sh.s, en.s))
        for k in range(r.randint(1, 2)):
            self.ev(sh, t0 + k * r.uniform(20, 200), 'read', en.pt, r.choice(['DocumentReference', 'Observation']), 'ETREAT')
        self.counters['benign_btg_uses'] += 1

    @why('ward-physician-round')
    def gen_ward_physicians(self):
        r = self.rng('physicians')
        res_load = defaultdict(int)
        for dept in WARDS:
            encs = self.ward_encs[dept]
            docs = [s for s in self.staff if s.dept == dept and s.role == 'physician' and not s.former]
            day_docs = [s for s in docs if s.pref != 'night'] or docs
            # attending at admission: the least loaded day physician
            att_load = defaultdict(int)
            for en in encs:
                if en.src == 'birth' and dept == 'maternity':
                    continue
                st = min(day_docs, key=lambda s: (att_load[s.id], r.random()))
                att_load[st.id] += 1
                en.attending = st
                self.add_row(en.pt, st.id, dept, en.s, en.e + D if en.e + D < self.T else None, r, 0.85)
            cover = {}
            for day in range(-1, self.days):
                ds = self.duty(dept, day * D + 11 * H, ('physician',))
                res = self.duty(dept, day * D + 11 * H, ('resident',))
                if not ds:
                    continue
                active = [en for en in encs if en.s < day * D + 17 * H and en.e > day * D + 8 * H]
                load = defaultdict(int)
                for en in active:
                    self.why = 'ward-physician-round-attending'
                    sh = None
                    a = en.attending if en.mother is None else (en.mother.attending if en.mother.attending else None)
                    for x in ds:
                        if x.st is a:
                            sh = x
                    if sh is None:
                        c = cover.get(en.id)
                        for x in ds:
                            if x.st is c:
                                sh = x
                        self.why = 'ward-physician-round-covering'
                        if sh is None:
                            sh = min(ds, key=lambda x: (load[x], r.random()))
                            cover[en.id] = sh.st
                        self.add_row(en.pt, sh.st.id, dept, max(day * D + 7 * H, en.s), day * D + 31 * H, r, 0.85)
                    load[sh] += 1
                    # newborns: examined on the first and the last day only
                    if en.mother is not None and not (en.s > day * D - 12 * H or en.e < (day + 1) * D + 12 * H):
                        continue
                    # psychiatry at weekends: only new or unsettled patients are seen
                    if dept == 'psychiatry' and self.weekday(day) >= 5 and en.s < day * D - 2 * D and r.random() < 0.6:
                        continue
                    t = max(sh.s + r.uniform(0.4, 4.5) * H, en.s + r.uniform(10, 60) * MIN)
                    if t >= min(sh.e, en.e):
                        continue
                    ordering = sh
                    # a resident on the team (rotation) writes notes and orders
                    if res and (en.resident is None or en.resident not in [x.st for x in res]):
                        rsh = min(res, key=lambda x: (res_load[(x.st.id, day)], r.random()))
                        if res_load[(rsh.st.id, day)] < 7:
                            en.resident = rsh.st
                            res_load[(rsh.st.id, day)] += 1
                            self.add_row(en.pt, rsh.st.id, dept, max(day * D, en.s), en.e + 12 * H if en.e + 12 * H < self.T else None, r, 0.85)
                    if en.resident is not None:
                        why0 = self.why
                        self.why = 'resident-team'
                        rsh = [x for x in res if x.st is en.resident]
                        if rsh:
                            rsh = rsh[0]
                            # pre-rounds before the attending's round, then notes and follow-ups
                            tp = max(rsh.s + r.uniform(5, 80) * MIN, en.s + 5 * MIN)
                            if tp < min(rsh.e, en.e):
                                self.visit(rsh, tp, en.pt, r, self.PHYS_ITEMS, 1, 4)
                                for _ in range(r.randint(1, 3)):
                                    t3 = r.uniform(rsh.s + 3 * H, rsh.e - 20 * MIN)
                                    if t3 < en.e:
                                        self.visit(rsh, t3, en.pt, r, self.PHYS_ITEMS, 1, 4, note_p=0.4)
                                if r.random() < 0.5:
                                    ordering = rsh
                        self.why = why0
                    tend = self.visit(sh, t, en.pt, r, self.PHYS_ITEMS, 3, 9, note_p=0.85)
                    self.ward_orders(ordering, tend + r.uniform(30, 300), en, dept, r, day)
                    if r.random() < 0.45:
                        t2 = t + r.uniform(3, 7) * H
                        if t2 < min(sh.e, en.e):
                            self.visit(sh, t2, en.pt, r, self.PHYS_ITEMS, 1, 4)
                # nights: nocturnist / night intensivist / 24 h obstetrician cross-cover
            self.why = 'night-physician-cross-cover'
            for day in range(-1, self.days):
                nt = self.duty(dept, day * D + 23 * H, ('physician',))
                for sh in nt:
                    active = [en for en in encs if en.s < sh.e and en.e > sh.s]
                    if not active:
                        continue
                    k = {'icu': int(len(active) * 1.3), 'maternity': 4, 'medicine': 7, 'orthopaedics': 0, 'psychiatry': 0}[dept]
                    for _ in range(poisson(r, k * math.sqrt(sh.st.activity))):
                        en = r.choice(active)
                        lo, hi = max(sh.s, en.s, day * D + 19.5 * H), min(sh.e, en.e, day * D + 31 * H)
                        if hi > lo:
                            tt = self.visit(sh, r.uniform(lo, hi), en.pt, r, self.PHYS_ITEMS, 1, 4, note_p=0.2)
                            if r.random() < 0.25:
                                self.order(sh, tt + 60, en.pt, 'pharmacy', 'MedicationRequest', r)
                                self.serve_pharmacy(tt + 60, en.pt, r)
                # labour: obstetrician reviews labouring mothers every few hours
            if dept == 'maternity':
                self.why = 'obstetrician-labour-review'
                for en in encs:
                    if en.labour_end is None:
                        continue
                    for t in poisson_times(r, en.s, en.labour_end + H, 0.4):
                        ds = self.duty('maternity', t, ('physician',))
                        if ds:
                            self.visit(r.choice(ds), t, en.pt, r, self.PHYS_ITEMS, 2, 5, note_p=0.3)
        # admissions: the admitting physician sees the patient in the emergency department
        for en in self.encs:
            self.why = 'admitting-physician-sees-ED-patient'
            if en.src != 'ed' or en.dept == 'emergency':
                continue
            t = en.s - r.uniform(20, 90) * MIN
            ds = self.duty(en.dept, t, ('physician',))
            sh = r.choice(ds) if ds else (self.oncall_shift(en.dept, t, r) if en.dept in ('orthopaedics', 'psychiatry') else None)
            if sh is None:
                continue
            self.visit(sh, t, en.pt, r, self.PHYS_ITEMS, 5, 10, note_p=0.95)
            self.order(sh, t + 8 * MIN, en.pt, 'pharmacy', 'MedicationRequest', r)
            self.serve_pharmacy(t + 8 * MIN, en.pt, r)
            # bed management by admissions
            self.why = 'bed-management'
            regs = self.duty('admissions', t + 10 * MIN, ('registrar',))
            if regs:
                rs = r.choice(regs)
                self.ev(rs, t + r.uniform(10, 40) * MIN, 'read', en.pt, 'Encounter', 'HOPERAT')
                self.ev(rs, t + r.uniform(41, 50) * MIN, 'update', en.pt, 'Location', 'HOPERAT')

    def ward_dept_rows(self):
        """Department-wide rows from the ADT feed: pharmacy for 70% of inpatient stays,
        the unit itself for intensive care, maternity and psychiatry (90%)."""
        r = self.rng('deptrows')
        for en in self.encs:
            if en.dept in WARDS:
                self.add_row(en.pt, None, 'pharmacy', en.s, en.e if en.e < self.T else None, r, 0.7)
                if en.dept in ('icu', 'maternity', 'psychiatry'):
                    self.add_row(en.pt, None, en.dept, en.s, en.e + 6 * H if en.e + 6 * H < self.T else None, r, 0.9)

    def ward_orders(self, sh, t, en, dept, r, day):
        p = en.pt
        for _ in range(poisson(r, 1.2)):
            t += r.uniform(20, 120)
            self.order(sh, t, p, 'pharmacy', 'MedicationRequest', r)
            self.serve_pharmacy(t, p, r)
        if r.random() < 0.2:
            t += r.uniform(20, 120)
            self.order(sh, t, p, 'radiology', 'ServiceRequest', r)
            self.serve_imaging(t, p, r, (30, 240))
        # tomorrow's morning labs: drawn 04:30, verified by the night lab from 05:00
        if en.e > (day + 1) * D + 5 * H and r.random() < (0.45 if dept == 'psychiatry' else 0.85):
            standing = r.random() < 0.25
            if not standing:
                t += r.uniform(20, 120)
                self.order(sh, t, p, 'lab', 'ServiceRequest', r, in_feed=1.0)
            else:
                self.counters['standing_lab_orders'] += 1
            self.morning_labs.append(((day + 1) * D + r.uniform(5.0, 6.85) * H, p))
        if r.random() < 0.07:
            cd = r.choice([d for d in ('medicine', 'orthopaedics', 'psychiatry', 'icu') if d != dept])
            t += r.uniform(20, 120)
            self.order(sh, t, p, cd, 'ServiceRequest', r)
            self.consult(t, p, cd, r, dept)
        if dept in ('medicine', 'icu') and r.random() < 0.1 or dept == 'orthopaedics' and en.surgery and day * D <= en.surgery < (day + 1) * D:
            t += r.uniform(20, 120)
            self.order(sh, t, p, 'rehab', 'ServiceRequest', r)
            self.rehab_refs.append((t, en))

    @why('night-lab-morning-draws')
    def gen_night_lab(self):
        r = self.rng('nightlab')
        for t, p in sorted(self.morning_labs, key=lambda x: x[0]):
            self.serve_lab(t, p, r, delay=0, why='night-lab-morning-draw')

    # ------------------------------------------------------------ emergency department
    @why('ed')
    def gen_emergency(self):
        r = self.rng('emergency')
        for en in self.ward_encs['emergency']:
            if en.e < 0 or en.s >= self.T:
                continue
            p = en.pt
            self.add_row(p, None, 'emergency', en.s, en.e + 2 * H if en.e + 2 * H < self.T else None, r, 0.9)
            # registration
            self.why = 'ed-registration'
            regs = self.duty('admissions', en.s + 2 * MIN, ('registrar',))
            if regs:
                rs = r.choice(regs)
                t = en.s + r.uniform(1, 8) * MIN
                self.ev(rs, t, 'search', None, 'Patient', 'HOPERAT')
                self.ev(rs, t + r.uniform(10, 40), 'read', p, 'Patient', 'HOPERAT')
                self.ev(rs, t + r.uniform(41, 120), 'create', p, 'Encounter', 'HOPERAT')
                if r.random() < 0.7:
                    self.ev(rs, t + r.uniform(121, 240), 'update', p, 'Coverage', 'HOPERAT')
            self.why = 'ed-triage'
            nurses = self.duty('emergency', en.s + MIN, ('nurse',))
            if nurses:
                tri = r.choice(nurses)
                t = en.s + r.uniform(0.5, 10) * MIN
                self.ev(tri, t, 'read', p, 'Patient', 'TREAT')
                self.ev(tri, t + r.uniform(20, 90), 'create', p, 'Observation', 'TREAT')
                self.ev(tri, t + r.uniform(91, 240), 'create', p, 'DocumentReference', 'TREAT')
            # primary nurse visits, with handover at shift change
            self.why = 'ed-nurse'
            t = en.s + r.uniform(10, 25) * MIN
            nsh = None
            while t < en.e:
                if nsh is None or t >= nsh.e:
                    ns = self.duty('emergency', t, ('nurse',))
                    if not ns:
                        t += 30 * MIN
                        continue
                    nsh = r.choice(ns)
                self.visit(nsh, t, p, r, self.NURSE_ITEMS, 1, 4)
                t += r.expovariate(1.3 * math.sqrt(nsh.st.activity) / H) + 5 * MIN
            # physician
            self.why = 'ed-physician'
            t = en.s + min(r.expovariate(1 / (25 * MIN)), 0.6 * (en.e - en.s))
            psh = None
            first = True
            while t < en.e - 5 * MIN:
                if psh is None or t >= psh.e:
                    ds = self.duty('emergency', t, ('physician', 'resident'))
                    if not ds:
                        t += 20 * MIN
                        continue
                    psh = r.choice(ds)
                    first_for_doc = True
                else:
                    first_for_doc = False
                tt = self.visit(psh, t, p, r, self.PHYS_ITEMS, 5 if first else 2, 11 if first else 5,
                                note_p=0.9 if first_for_doc else 0.3)
                if first:
                    first = False
                    if r.random() < 0.7:
                        tt += r.uniform(30, 120)
                        self.order(psh, tt, p, 'lab', 'ServiceRequest', r)
                        self.serve_lab(tt, p, r, stat=True)
                    if r.random() < 0.45:
                        tt += r.uniform(30, 120)
                        self.order(psh, tt, p, 'radiology', 'ServiceRequest', r)
                        self.serve_imaging(tt, p, r, (20, 90))
                    if r.random() < 0.6:
                        tt += r.uniform(30, 120)
                        self.order(psh, tt, p, 'pharmacy', 'MedicationRequest', r)
                        self.serve_pharmacy(tt, p, r)
                    if r.random() < 0.06:
                        cd = r.choice(['orthopaedics', 'psychiatry', 'medicine'])
                        tt += r.uniform(30, 120)
                        self.order(psh, tt, p, cd, 'ServiceRequest', r)
                        self.consult(tt, p, cd, r, 'emergency')
                t = tt + r.expovariate(1 / (75 * MIN)) + 10 * MIN
            # admission order to the ward
            for nx in p.encs:
                if nx.src == 'ed' and abs(nx.s - en.e) < 1 and nx.dept != 'emergency' and psh is not None:
                    self.order(psh, nx.s - r.uniform(90, 120) * MIN, p, nx.dept, 'ServiceRequest', r)
            if r.random() < 0.4 and psh is not None:
                self.ev(psh, en.e - r.uniform(1, 10) * MIN, 'print', p, 'DocumentReference', 'TREAT', records=1,
                        dest='printer:sbrh/ed-desk-%d' % r.randrange(1, 5))
        # benign break-the-glass in the emergency department (restricted/unregistered arrivals)
        for st in self.staff:
            if st.dept == 'emergency' and st.role in ('physician', 'nurse'):
                for sh in st.shifts:
                    if r.random() < 0.15:
                        act = [en for en in self.ward_encs['emergency'] if en.s < sh.e and en.e > sh.s]
                        self.benign_btg(sh, r, act)

    # ------------------------------------------------------------ clinic, telehealth, dialysis, rehab
    @why('clinic')
    def gen_outpatient(self):
        r = self.rng('outpatient')
        self.clinic_visits = []
        for st in self.staff:
            if st.dept != 'outpatient' or st.role != 'physician' or st.former:
                continue
            panel = self.panels.get(st.id, [])
            if not panel:
                continue
            for sh in st.shifts:
                day = sh.day
                slots = [day * D + 8 * H + i * 20 * MIN for i in range(11)] + [day * D + 13 * H + i * 20 * MIN for i in range(11)]
                slots = [s for s in slots if r.random() < 0.72]
                appts = []
                for s in slots:
                    p = r.choice(panel)
                    if p.busy > s:
                        continue
                    appts.append((s, p))
                # chart preparation: a few minutes before clinic for everyone on today's list
                self.why = 'clinic-chart-prep'
                if r.random() < 0.6:
                    t = sh.s + r.uniform(2, 8) * MIN
                    for s, p in appts:
                        self.ev(sh, t, 'read', p, 'DocumentReference', 'TREAT')
                        t += r.uniform(20, 70)
                self.why = 'clinic-visit'
                for s, p in appts:
                    en = self.new_enc(p, 'outpatient', s, s + 30 * MIN, 'clinic')
                    self.add_row(p, st.id, 'outpatient', s - r.uniform(1, 21) * D, s + 14 * D, r, 0.85)
                    self.add_row(p, None, 'outpatient', day * D, day * D + 2 * D, r, 0.5)
                    if r.random() < 0.08:
                        continue   # no-show
                    regs = self.duty('admissions', s, ('registrar',))
                    if regs:
                        rs = r.choice(regs)
                        tc = s - r.uniform(1, 12) * MIN
                        self.ev(rs, tc, 'read', p, 'Patient', 'HOPERAT')
                        self.ev(rs, tc + r.uniform(20, 90), 'update', p, 'Appointment', 'HOPERAT')
                    ns = self.duty('outpatient', s, ('nurse',))
                    if ns:
                        nsh = r.choice(ns)
                        tn = s + r.uniform(0, 8) * MIN
                        self.ev(nsh, tn, 'read', p, 'Patient', 'TREAT')
                        self.ev(nsh, tn + r.uniform(30, 120), 'create', p, 'Observation', 'TREAT')
                        self.ev(nsh, tn + r.uniform(121, 200), 'read', p, 'MedicationStatement', 'TREAT')
                    tv = s + r.uniform(8, 18) * MIN
                    tt = self.visit(sh, tv, p, r, self.PHYS_ITEMS, 2, 7, note_p=0.95)
                    self.clinic_visits.append((s, p, st))
                    if r.random() < 0.35:
                        tt += r.uniform(30, 90)
                        self.order(sh, tt, p, 'lab', 'ServiceRequest', r, in_feed=0.75)
                        self.serve_lab(tt, p, r, delay=r.uniform(2, 6) * H)
                    if r.random() < 0.1:
                        tt += r.uniform(30, 90)
                        self.order(sh, tt, p, 'radiology', 'ServiceRequest', r, in_feed=0.75)
                        self.serve_imaging(tt, p, r, (60, 36 * 60))
                    if r.random() < 0.5:
                        tt += r.uniform(20, 60)
                        self.ev(sh, tt, 'create', p, 'MedicationRequest', 'TREAT', attrs={'route': 'eprescribe'})
                    if r.random() < 0.75:
                        self.ev(sh, tt + r.uniform(30, 200), 'print', p, 'DocumentReference', 'TREAT', records=1,
                                dest='printer:sbrh/opd-%d' % r.randrange(1, 7))
                # in-basket: results of earlier visits
                self.why = 'clinic-inbasket-results'
                for _ in range(poisson(r, 4 * st.activity)):
                    seen = [x for x in self.clinic_visits if x[2] is st and x[0] < sh.s - D]
                    if not seen:
                        break
                    s, p, _ = r.choice(seen[-200:])
                    t = r.uniform(sh.s + 4 * H, sh.e - 10 * MIN)
                    self.ev(sh, t, 'read', p, 'DiagnosticReport', 'TREAT')
                    if r.random() < 0.5:
                        self.ev(sh, t + r.uniform(30, 200), 'create', p, 'Communication', 'TREAT')
        # nurses' telephone triage line: panel patients who call in
        self.why = 'clinic-phone-triage'
        allpanel = [p for v in self.panels.values() for p in v]
        for st in self.staff:
            if st.dept == 'outpatient' and st.role == 'nurse':
                for sh in st.shifts:
                    for _ in range(poisson(r, 5 * st.activity)):
                        p = r.choice(allpanel)
                        t = r.uniform(sh.s + 20 * MIN, sh.e - 20 * MIN)
                        self.ev(sh, t, 'read', p, 'Patient', 'TREAT')
                        self.ev(sh, t + r.uniform(20, 90), 'read', p, 'DocumentReference', 'TREAT')
                        self.ev(sh, t + r.uniform(91, 300), 'create', p, 'Communication', 'TREAT')
                        self.counters['phone_triage_calls'] += 1
        # tele-health evening clinic 17:00-21:00, Mon-Thu, from home over the VPN
        self.why = 'telehealth-evening'
        for st in self.staff:
            if st.tele is None:
                continue
            panel = self.panels.get(st.id, [])
            for day in range(0, self.days):
                if self.weekday(day) != st.tele:
                    continue
                if st.term is not None and st.term < day * D + 22 * H:
                    continue
                s0 = day * D + 17 * H
                sh = Shift(st, 'outpatient', s0 - r.uniform(3, 12) * MIN, day * D + 21 * H + r.uniform(5, 30) * MIN,
                           'eve', day, 'tele', True)
                sess = self.new_session(st.vpn)
                sh.sessions.append((sh.s, sess))
                self.emit(sh.s, st, 'login', None, None, None, sess, dept='outpatient')
                self.remote_shifts.append(sh)
                st.shifts.append(sh)
                self.counters['telehealth_evenings'] += 1
                for i in range(12):
                    s = s0 + i * 20 * MIN
                    if r.random() < 0.15:
                        continue
                    p = r.choice(panel)
                    self.new_enc(p, 'outpatient', s, s + 20 * MIN, 'telehealth')
                    self.add_row(p, st.id, 'outpatient', s - r.uniform(1, 10) * D, s + 14 * D, r, 0.85)
                    tt = self.visit(sh, s + r.uniform(0, 4) * MIN, p, r, self.PHYS_ITEMS, 2, 5, note_p=0.95)
                    if r.random() < 0.4:
                        self.ev(sh, tt + 60, 'create', p, 'MedicationRequest', 'TREAT', attrs={'route': 'eprescribe'})
                    self.counters['telehealth_visits'] += 1

    @why('dialysis')
    def gen_dialysis(self):
        r = self.rng('dialysis')
        for p in self.dialysis:
            self.add_row(p, None, 'dialysis', -r.uniform(30, 900) * D, None, r, 0.9)
        for day in range(0, self.days):
            wdy = self.weekday(day)
            if wdy == 6:
                continue
            grp = 0 if wdy in (0, 2, 4) else 1
            ns = self.duty('dialysis', day * D + 9 * H, ('nurse',))
            if not ns:
                continue
            for sess_i, s0 in ((0, day * D + 6.5 * H), (1, day * D + 11.5 * H)):
                pts = [p for p in self.dialysis if p.dialysis == (grp, sess_i) and p.busy < s0 and r.random() < 0.95]
                for i, p in enumerate(pts):
                    sh = ns[i % len(ns)]
                    self.new_enc(p, 'dialysis', s0, s0 + 4 * H, 'dialysis')
                    t = s0 + r.uniform(-10, 15) * MIN
                    self.ev(sh, t, 'read', p, 'Encounter', 'TREAT')
                    self.ev(sh, t + r.uniform(20, 60), 'read', p, 'MedicationRequest', 'TREAT')
                    self.ev(sh, t + r.uniform(61, 150), 'read', p, 'Observation', 'TREAT')
                    for k in range(8):
                        self.ev(sh, s0 + (k + 0.5) * 30 * MIN + r.uniform(-5, 5) * MIN, 'create', p, 'Observation', 'TREAT')
                    self.ev(sh, s0 + 4 * H + r.uniform(0, 15) * MIN, 'create', p, 'DocumentReference', 'TREAT')
                    if wdy in (0, 1) and r.random() < 0.25:   # monthly labs
                        self.order(sh, s0 + 5 * MIN, p, 'lab', 'ServiceRequest', r, in_feed=0.8)
                        self.serve_lab(s0 + 5 * MIN, p, r)
            # nephrologist rounds
            for sh in self.duty('dialysis', day * D + 10 * H, ('physician',)):
                pts = [p for p in self.dialysis if p.dialysis[0] == grp]
                for p in r.sample(pts, min(len(pts), max(1, len(pts) // 3))):
                    t = r.uniform(sh.s + 20 * MIN, sh.e - 30 * MIN)
                    tt = self.visit(sh, t, p, r, self.PHYS_ITEMS, 2, 6, note_p=0.7)
                    if r.random() < 0.3:
                        self.order(sh, tt + 60, p, 'pharmacy', 'MedicationRequest', r)
                        self.serve_pharmacy(tt + 60, p, r)

    @why('rehab-therapy')
    def gen_rehab(self):
        r = self.rng('rehab')
        refs = sorted(self.rehab_refs, key=lambda x: x[0])
        open_cases = []   # (en, therapist id)
        for day in range(0, self.days):
            ts = self.duty('rehab', day * D + 10 * H, ('therapist',))
            if not ts:
                continue
            for t, en in refs:
                if day * D - D <= t < day * D + 8 * H:
                    open_cases.append([en, None])
            load = defaultdict(int)
            for case in open_cases:
                en = case[0]
                if en.e < day * D + 9 * H or en.s > day * D + 15 * H:
                    continue
                sh = None
                for x in ts:
                    if x.st is case[1]:
                        sh = x
                if sh is None:
                    sh = min(ts, key=lambda x: (load[x], r.random()))
                    if case[1] is None:
                        self.add_row(en.pt, sh.st.id, 'rehab', day * D, en.e + D if en.e + D < self.T else None, r, 0.85)
                    case[1] = sh.st
                load[sh] += 1
                t = r.uniform(sh.s + 20 * MIN, sh.e - H)
                self.visit(sh, t, en.pt, r, [('read', 'DocumentReference', 2), ('read', 'Observation', 1),
                                             ('create', 'Observation', 1)], 1, 3, note_p=0.9)

    @why('psych-psychologist-socialworker')
    def gen_psych_team(self):
        r = self.rng('psychteam')
        encs = self.ward_encs['psychiatry']
        for st in self.staff:
            if st.dept != 'psychiatry' or st.role not in ('psychologist', 'social_worker'):
                continue
            for sh in st.shifts:
                act = [en for en in encs if en.s < sh.s + 6 * H and en.e > sh.s + 2 * H]
                k = min(len(act), r.randint(5, 8))
                for en in r.sample(act, k):
                    t = r.uniform(sh.s + 20 * MIN, sh.e - 40 * MIN)
                    self.visit(sh, t, en.pt, r, [('read', 'DocumentReference', 3), ('read', 'Observation', 0.5),
                                                 ('read', 'CarePlan', 1)], 2, 4, note_p=0.9)

    # ------------------------------------------------------------ admissions, billing, research
    @why('admissions-registration-bedboard')
    def gen_admissions_extra(self):
        r = self.rng('admissions')
        # elective and maternity registrations, bed management rounds
        for en in self.encs:
            if en.src in ('elective', 'sched_birth', 'labour', 'direct'):
                regs = self.duty('admissions', en.s - 5 * MIN, ('registrar',))
                if regs:
                    rs = r.choice(regs)
                    t = en.s - r.uniform(2, 25) * MIN
                    self.ev(rs, t, 'search', None, 'Patient', 'HOPERAT')
                    self.ev(rs, t + r.uniform(10, 60), 'read', en.pt, 'Patient', 'HOPERAT')
                    self.ev(rs, t + r.uniform(61, 180), 'create', en.pt, 'Encounter', 'HOPERAT')
        for day in range(0, self.days):
            for h in (9, 14, 21):
                regs = self.duty('admissions', day * D + h * H, ('registrar',))
                if not regs:
                    continue
                rs = r.choice(regs)
                t = day * D + h * H + r.uniform(0, 40) * MIN
                self.ev(rs, t, 'search', None, 'Location', 'HOPERAT', attrs={'list': 'bed-board'})
                dis = [en for en in self.encs if en.dept in WARDS and t - 3 * H < en.e < t + 3 * H]
                for en in r.sample(dis, min(len(dis), r.randint(2, 8))):
                    t += r.uniform(30, 240)
                    self.ev(rs, t, 'read', en.pt, 'Encounter', 'HOPERAT')

    @why('billing-accounts')
    def gen_billing(self):
        r = self.rng('billing')
        ends = sorted(((en.e, en.pt) for en in self.encs if en.dept != 'dialysis'), key=lambda x: x[0])
        keys = [x[0] for x in ends]
        for st in self.staff:
            if st.dept != 'billing' or st.former:
                continue
            for sh in st.shifts:
                lo = bisect.bisect_left(keys, sh.s - 21 * D)
                hi = bisect.bisect_left(keys, sh.s - 2 * D)
                if hi <= lo:
                    continue
                n = int(round(50 * st.activity * r.uniform(0.7, 1.2)))
                t = sh.s + r.uniform(5, 20) * MIN
                step = (sh.e - t - 30 * MIN) / max(n, 1)
                for i in range(n):
                    _, p = ends[r.randrange(lo, hi)]
                    tt = t + i * step + r.uniform(0, step * 0.5)
                    if day_lunch(tt):
                        tt += 45 * MIN
                    self.ev(sh, tt, 'read', p, 'Encounter', 'HPAYMT')
                    for k in range(r.randint(1, 4)):
                        tt += r.uniform(15, 120)
                        a, rt = r.choice([('read', 'Claim'), ('read', 'DocumentReference'), ('update', 'Claim'),
                                          ('read', 'Coverage'), ('read', 'Procedure')])
                        self.ev(sh, tt, a, p, rt, 'HPAYMT')
                # a weekly account report to the department share
                if self.weekday(sh.day) == 4 and r.random() < 0.5:
                    self.ev(sh, sh.e - r.uniform(20, 60) * MIN, 'export', None, 'Bundle', 'HPAYMT',
                            records=r.randint(200, 900), dest='smb://sbrh-fs01.sbrh.internal/billing/weekly.xlsx')

    @why('research-consented')
    def gen_research(self):
        r = self.rng('research')
        for st in self.staff:
            if st.dept != 'clinical_research' or st.former:
                continue
            focus_dialysis = st.idx == 0
            for sh in st.shifts:
                n = int(round(22 * st.activity * r.uniform(0.6, 1.3)))
                pool = self.dialysis if focus_dialysis and r.random() < 0.6 else None
                got = 0
                for _ in range(n * 6):
                    if got >= n:
                        break
                    t = r.uniform(sh.s + 15 * MIN, sh.e - 15 * MIN)
                    p = r.choice(pool) if pool else r.choice(self.patients)
                    if self.consent_at(p, t) != 'granted':
                        continue
                    got += 1
                    for k in range(r.randint(1, 4)):
                        self.ev(sh, t + k * r.uniform(20, 90), 'read', p,
                                r.choice(['Observation', 'DiagnosticReport', 'Condition', 'MedicationRequest']), 'HRESCH')
                if self.weekday(sh.day) == (st.idx % 5) and r.random() < 0.8:
                    self.ev(sh, sh.e - r.uniform(30, 90) * MIN, 'export', None, 'Bundle', 'HRESCH',
                            records=r.randint(80, 3000),
                            dest='sftp://research-enclave.sbrh.internal/cohorts/%s-%d.parquet' % (st.id, sh.day))

    @why('service-accounts')
    def gen_services(self):
        r = self.rng('services')
        dw, cl, hie = self.svc['svc-dw'], self.svc['svc-claims'], self.svc['svc-hie']
        sdw = self.new_session('10.10.0.21')
        scl = self.new_session('10.10.0.22')
        shie = self.new_session('10.10.0.23')
        tables = ['encounter', 'observation', 'medication', 'diagnosis', 'procedure', 'billing', 'notes_meta', 'orders']
        for day in range(0, self.days):
            t = day * D + 1.75 * H + r.uniform(0, 20) * MIN
            for tb in r.sample(tables, r.randint(4, 8)):
                self.emit(t, dw, 'export', None, 'Bundle', 'HOPERAT', sdw, records=r.randint(5000, 60000),
                          dest='dw://warehouse.sbrh.internal/stage/%s' % tb)
                t += r.uniform(60, 600)
            self.emit_raw(t + 60, {'time': self.iso(t + 60), 'kind': 'lineage',
                                   'actor': {'id': dw.id, 'role': 'service', 'dept': 'it', 'ip': sdw.ip, 'session': sdw.id},
                                   'source': 'etl', 'op': 'derive', 'inputs': ['dataset:ehr.nightly-%d' % day],
                                   'outputs': ['dataset:warehouse.clinical'], 'job': 'dw_nightly'})
            if self.weekday(day) < 5:
                t = day * D + 19.5 * H + r.uniform(0, 30) * MIN
                for _ in range(r.randint(1, 2)):
                    self.emit(t, cl, 'export', None, 'Claim', 'HPAYMT', scl, records=r.randint(150, 1200),
                              dest='https://claims.clearinghouse-partner.com/batch')
                    t += r.uniform(300, 1200)
        # HIE query responses around the clock
        self.why = 'hie-query-response'
        recent = [en.pt for en in self.encs if en.e > -30 * D]
        for t in poisson_times(r, 0, self.T, 7.0):
            p = r.choice(recent) if r.random() < 0.6 else r.choice(self.patients)
            self.emit(t, hie, 'read', p, 'DocumentReference', 'TREAT', shie, attrs={'requester': 'hie-carequality'})
            self.emit(t + r.uniform(0.2, 3), hie, 'read', p, 'Bundle', 'TREAT', shie)

    # ------------------------------------------------------------ ground truth helpers
    def related(self, st, p):
        """Any relationship in the benign ground truth (the whole run): touched by the actor,
        a per-actor care-team row, or seen by/ordered to/in a department the actor worked in."""
        if p in self.touched[st.id] or p in self.actor_rows[st.id]:
            return True
        for d in self.worked_depts[st.id] | {st.dept}:
            if p in self.dept_seen[d]:
                return True
        for en in p.encs:
            if en.dept in self.worked_depts[st.id] or en.dept == st.dept:
                return True
        return False

    def known_of(self, st):
        kn = dict(self.known.get(st.id, {}))
        if st.system not in ('float', 'resident'):
            for p in self.coworker_records(st):
                kn.setdefault(p, 'coworker')
        return kn

    def gen_benign(self):
        self.morning_labs = []
        self.rehab_refs = []
        self.logins()
        self.ward_dept_rows()
        self.gen_emergency()
        self.gen_wards()
        self.gen_night_lab()
        self.gen_outpatient()
        self.gen_dialysis()
        self.gen_rehab()
        self.gen_psych_team()
        self.gen_admissions_extra()
        self.gen_billing()
        self.gen_research()
        self.gen_services()


def day_lunch(t):
    h = (t % D) / H
    return 12.0 <= h < 12.75


# ---------------------------------------------------------------- misuse

class Injector:
    """Misuse injected on top of ordinary work, never replacing it."""

    def __init__(self, hosp):
        self.h = hosp
        self.used = defaultdict(set)
        self.n = max(10, 2 * hosp.days)
        self.first_day = 2 if hosp.days > 4 else 0

    def day_of(self, i):
        h = self.h
        span = h.days - self.first_day
        return self.first_day + (i * span) // self.n

    def free(self, st, s, e):
        for a, b in self.h.misuse_windows[st.id]:
            if s < b + 3 * H and e > a - 3 * H:
                return False
        return True

    def pick_shift(self, scen, r, day, pred, min_len=4 * H):
        h = self.h
        cands = []
        for (dept, d), lst in h.shifts_by_day.items():
            if d != day:
                continue
            for sh in lst:
                if sh.remote or sh.e - sh.s < min_len or sh.s < 48 * H - 6 * H:
                    continue
                if pred(sh):
                    cands.append(sh)
        cands.sort(key=lambda sh: (sh.st.id, sh.s))
        fresh = [sh for sh in cands if sh.st.id not in self.used[scen]]
        pool = fresh or cands
        r.shuffle(pool)
        return pool

    def record(self, scen, st, evs, detect_idx, extra=None):
        h = self.h
        evs = [e for e in evs if e is not None]
        evs.sort(key=lambda e: (e[0], e[1]))
        pts = {e[2].get('patient') for e in evs if e[2].get('patient')}
        lab = {'scenario': scen, 'actor': st.id, 'patient': next(iter(pts)) if len(pts) == 1 else None,
               'evs': evs, 'detect': detect_idx(evs)}
        if extra:
            lab.update(extra)
        h.labels.append(lab)
        h.misuse_windows[st.id].append((evs[0][0], evs[-1][0]))
        self.used[scen].add(st.id)

    def mev(self, scen, st, sh, t, action, p=None, rtype=None, purpose='TREAT', sess=None, dept=None, **kw):
        h = self.h
        if sess is None:
            sess = h.sess_at(sh, t) if sh is not None else None
        return h.emit(t, st, action, p, rtype, purpose, sess, dept=dept or (sh.dept if sh else st.dept), tag=scen, **kw)

    # detection indices
    @staticmethod
    def nth_event(n):
        return lambda evs: min(n, len(evs)) - 1

    @staticmethod
    def nth_distinct_read(n, purpose=None):
        def f(evs):
            seen = []
            for i, e in enumerate(evs):
                b = e[2]
                if b['action'] == 'read' and b.get('patient') and (purpose is None or b.get('purpose') == purpose):
                    if b['patient'] not in seen:
                        seen.append(b['patient'])
                        if len(seen) == n:
                            return i
            return len(evs) - 1
        return f

    @staticmethod
    def nth_denied(n):
        def f(evs):
            k = 0
            for i, e in enumerate(evs):
                if e[2].get('outcome') == 'denied':
                    k += 1
                    if k == n:
                        return i
            return len(evs) - 1
        return f

    @staticmethod
    def records_reach(n):
        def f(evs):
            tot = 0
            for i, e in enumerate(evs):
                if e[2]['action'] in ('export', 'print'):
                    tot += e[2].get('records', 1)
                    if tot >= n:
                        return i
            return len(evs) - 1
        return f

    @staticmethod
    def first_read():
        def f(evs):
            for i, e in enumerate(evs):
                if e[2]['action'] == 'read' and e[2].get('patient'):
                    return i
            return len(evs) - 1
        return f

    @staticmethod
    def first_of(pats):
        def f(evs):
            for i, e in enumerate(evs):
                if e[2]['action'] == 'read' and e[2].get('patient') in pats:
                    return i
            return len(evs) - 1
        return f

    # target pools
    def current_inpatients(self, t, exclude_dept=None):
        return [en.pt for d in WARDS + ('emergency',) if d != exclude_dept
                for en in self.h.ward_encs[d] if en.s <= t < en.e]

    def strangers(self, st, r, t, n, half_current=True):
        h = self.h
        kn = h.known_of(st)
        out = []
        cur = self.current_inpatients(t)
        tries = 0
        while len(out) < n and tries < 4000:
            tries += 1
            if half_current and len(out) % 2 == 0 and cur:
                p = r.choice(cur)
            else:
                p = r.choice(h.patients)
            if p in out or p.flag or p in kn or p is st.own or h.related(st, p):
                continue
            out.append(p)
        return out

    def base_purpose(self, st):
        return {'billing_clerk': 'HPAYMT', 'registrar': 'HOPERAT', 'researcher': 'HRESCH'}.get(st.role, 'TREAT')

    # -------------------------------------------------------------- scenarios
    def volume_burst(self, i, r):
        roles = ('physician', 'nurse', 'midwife', 'registrar', 'pharmacist', 'billing_clerk', 'lab_technologist', 'resident')
        for sh in self.pick_shift('volume_burst', r, self.day_of(i), lambda s: s.st.role in roles):
            st = sh.st
            t0 = r.uniform(sh.s + H, sh.e - H)
            dur = r.uniform(3, 8) * MIN
            if not self.free(st, t0, t0 + dur):
                continue
            rate = r.uniform(8, 25)
            n = max(20, int(rate * dur / MIN))
            if st.role == 'billing_clerk':
                pool = [en.pt for en in self.h.encs if t0 - 20 * D < en.e < t0 - D]
            elif st.role in ('lab_technologist', 'pharmacist', 'registrar'):
                pool = self.current_inpatients(t0)
            else:
                pool = [en.pt for en in self.h.ward_encs.get(sh.dept, []) if en.s <= t0 < en.e] or self.current_inpatients(t0)
            if len(pool) < 3:
                continue
            times = sorted(r.uniform(t0, t0 + dur) for _ in range(n))
            evs = []
            purpose = self.base_purpose(st)
            for t in times:
                if r.random() < 0.15:
                    evs.append(self.mev('volume_burst', st, sh, t, 'search', None, 'Patient', purpose))
                else:
                    evs.append(self.mev('volume_burst', st, sh, t, 'read', r.choice(pool),
                                        r.choice(['Observation', 'DocumentReference', 'DiagnosticReport', 'Encounter', 'MedicationRequest']),
                                        purpose))
            self.record('volume_burst', st, evs, self.nth_event(20))
            return True
        return False

    def breadth(self, i, r):
        roles = ('physician', 'nurse', 'midwife', 'therapist', 'psychologist', 'pharmacist', 'resident')
        for sh in self.pick_shift('breadth', r, self.day_of(i),
                                  lambda s: s.st.role in roles and s.dept != 'emergency' and s.kind == 'day'):
            st = sh.st
            dur = r.uniform(20, 90) * MIN
            t0 = r.uniform(sh.s + H, max(sh.s + H + 1, sh.e - dur - 30 * MIN))
            if not self.free(st, t0, t0 + dur):
                continue
            n = r.randint(25, 90)
            cur = self.current_inpatients(t0)
            targets = []
            while len(targets) < n:
                x = r.random()
                p = r.choice(cur) if x < 0.5 and cur else r.choice(self.h.patients)
                if p in targets or p is st.own:
                    continue
                targets.append(p)
            times = sorted(r.uniform(t0, t0 + dur) for _ in targets)
            evs = []
            for t, p in zip(times, targets):
                evs.append(self.mev('breadth', st, sh, t, 'read', p, r.choice(['Patient', 'Encounter', 'DocumentReference'])))
                if r.random() < 0.4:
                    evs.append(self.mev('breadth', st, sh, t + r.uniform(3, 25), 'read', p, 'DiagnosticReport'))
            self.record('breadth', st, evs, self.nth_distinct_read(25))
            return True
        return False

    def unrelated_charts(self, i, r):
        roles = ('physician', 'nurse', 'midwife', 'therapist', 'registrar', 'pharmacist', 'psychologist', 'resident')
        for sh in self.pick_shift('unrelated_charts', r, self.day_of(i), lambda s: s.st.role in roles, min_len=7 * H):
            st = sh.st
            n = r.randint(3, 12)
            gap = r.uniform(40, 90) * MIN
            t0 = sh.s + r.uniform(0.3, 1.5) * H
            n = max(3, min(n, int((sh.e - t0 - 20 * MIN) / gap) + 1))
            if not self.free(st, t0, t0 + n * gap):
                continue
            targets = self.strangers(st, r, t0, n)
            if len(targets) < n:
                continue
            evs = []
            t = t0
            purpose = self.base_purpose(st) if st.role != 'registrar' else 'TREAT'
            for p in targets:
                tt = t
                for k in range(r.randint(1, 3)):
                    evs.append(self.mev('unrelated_charts', st, sh, tt, 'read', p,
                                        ['Patient', 'DocumentReference', 'DiagnosticReport'][k], purpose))
                    tt += r.uniform(15, 120)
                t += gap * r.uniform(0.7, 1.3)
                if t > sh.e - 5 * MIN:
                    break
            self.record('unrelated_charts', st, evs, self.nth_distinct_read(2))
            return True
        return False

    def snooping(self, i, r):
        roles = ('physician', 'nurse', 'midwife', 'therapist', 'registrar', 'pharmacist', 'lab_technologist',
                 'billing_clerk', 'resident', 'psychologist', 'social_worker')
        h = self.h
        for sh in self.pick_shift('snooping', r, self.day_of(i), lambda s: s.st.role in roles):
            st = sh.st
            kn = h.known_of(st)
            cands = [p for p in kn if p.flag is None and p is not st.own and not h.related(st, p)]
            if not cands:
                continue
            k = min(len(cands), r.choices([1, 2, 3, 4], [45, 30, 15, 10])[0])
            known = r.sample(cands, k)
            t0 = r.uniform(sh.s + 0.5 * H, sh.e - 1 * H)
            span = r.uniform(5 * MIN, min(3 * H, sh.e - t0 - 5 * MIN))
            if not self.free(st, t0, t0 + span):
                continue
            strangers = self.strangers(st, r, t0, r.choice([0, 0, 1, 2]))
            targets = known + strangers
            r.shuffle(targets)
            starts = sorted(r.uniform(t0, t0 + span) for _ in targets)
            evs = []
            purpose = self.base_purpose(st) if st.role == 'billing_clerk' else 'TREAT'
            for t, p in zip(starts, targets):
                if r.random() < 0.5:
                    evs.append(self.mev('snooping', st, sh, t - r.uniform(5, 40), 'search', None, 'Patient', purpose))
                for k2 in range(r.randint(1, 4)):
                    evs.append(self.mev('snooping', st, sh, t + k2 * r.uniform(10, 90), 'read', p,
                                        ['Patient', 'DocumentReference', 'DiagnosticReport', 'Encounter'][k2],
                                        purpose if r.random() > 0.15 else None))
            self.record('snooping', st, evs, self.first_of({p.mrn for p in known}),
                        extra={'_known': [(p.mrn, kn[p]) for p in known]})
            return True
        return False

    def vip_curiosity(self, i, r):
        roles = ('physician', 'nurse', 'midwife', 'therapist', 'registrar', 'pharmacist', 'lab_technologist',
                 'billing_clerk', 'resident', 'psychologist', 'social_worker')
        h = self.h
        flagged = [p for p in h.patients if p.flag]
        for sh in self.pick_shift('vip_curiosity', r, self.day_of(i), lambda s: s.st.role in roles):
            st = sh.st
            t0 = r.uniform(sh.s + 0.5 * H, sh.e - H)
            if not self.free(st, t0, t0 + H):
                continue
            admitted = [p for p in flagged if any(en.s <= t0 < en.e and en.dept in WARDS + ('emergency',) for en in p.encs)]
            pool = admitted if admitted and r.random() < 0.75 else flagged
            pool = [p for p in pool if not h.related(st, p) and p is not st.own]
            if not pool:
                continue
            p = r.choice(pool)
            purpose = self.base_purpose(st) if st.role == 'billing_clerk' else 'TREAT'
            evs = []
            t = t0
            if r.random() < 0.5:
                evs.append(self.mev('vip_curiosity', st, sh, t - r.uniform(5, 30), 'search', None, 'Patient', purpose))
            for k in range(r.randint(1, 4)):
                evs.append(self.mev('vip_curiosity', st, sh, t, 'read', p,
                                    ['Patient', 'DocumentReference', 'Encounter', 'DiagnosticReport'][k],
                                    purpose if r.random() > 0.15 else None))
                t += r.uniform(1, 10) * MIN
            self.record('vip_curiosity', st, evs, self.first_read(), extra={'_category': p.flag})
            return True
        return False

    def after_termination(self, i, r, leaver):
        h = self.h
        st = leaver
        day = self.day_of(i)
        if st.former:
            t0 = day * D + r.uniform(0, 24) * H
        else:
            t0 = max(st.term + r.uniform(1 * H, 4 * D), self.first_day * D + H)
            if t0 >= h.T - H:
                t0 = max(st.term + H, h.T - 6 * H)
        vpn = r.random() < 0.6
        ip = st.vpn if vpn else h.ws_ip(st.dept, r)
        sess = h.new_session(ip)
        evs = []
        t = t0
        if r.random() < 0.65:
            evs.append(self.mev('after_termination', st, None, t, 'login', None, None, None, sess=sess))
            t += r.uniform(20, 120)
        # former patients of their last shifts, people they know, or anyone
        pool = sorted(h.touched[st.id], key=lambda p: -h.touched[st.id][p])[:40]
        kn = [p for p in h.known.get(st.id, {})]
        n = r.randint(1, 12)
        for k in range(n):
            x = r.random()
            if x < 0.15 and kn:
                p = r.choice(kn)
            elif x < 0.7 and pool:
                p = r.choice(pool)
            else:
                p = r.choice(h.patients)
            if r.random() < 0.15:
                evs.append(self.mev('after_termination', st, None, t, 'search', None, 'Patient', 'TREAT', sess=sess))
                t += r.uniform(10, 60)
            evs.append(self.mev('after_termination', st, None, t, 'read', p,
                                r.choice(['Patient', 'DocumentReference', 'DiagnosticReport', 'Observation']),
                                self.base_purpose(st), sess=sess))
            t += r.uniform(15, 400)
        self.record('after_termination', st, evs, self.nth_event(1),
                    extra={'_via': 'vpn' if vpn else 'workstation', '_left': h.iso(st.term)})
        return True

    def bulk_export(self, i, r):
        roles = ('physician', 'nurse', 'registrar', 'billing_clerk', 'researcher', 'pharmacist', 'lab_technologist', 'resident')
        for sh in self.pick_shift('bulk_export', r, self.day_of(i), lambda s: s.st.role in roles):
            st = sh.st
            t0 = r.uniform(sh.s + H, sh.e - H)
            if not self.free(st, t0, t0 + H):
                continue
            total = int(math.exp(r.uniform(math.log(150), math.log(12000))))
            method = r.choice(['print', 'print', 'download', 'mail', 'cloud', 'usb'])
            home = st.id.replace('sb', 'u')
            dest = {'print': r.choice(['printer:vpn-client/HP_DeskJet_2700', 'printer:192.168.1.40/Brother_HL-L2350',
                                       'printer:home-office/Canon_MF3010']),
                    'download': 'file:///C:/Users/%s/Downloads/patient_list_%d.csv' % (home, r.randrange(100, 999)),
                    'mail': 'mailto:%s.personal@gmail.com' % home,
                    'cloud': 'https://drive.google.com/drive/my-drive/upload',
                    'usb': 'usb:E:/export/%s.xlsx' % home}[method]
            purpose = self.base_purpose(st)
            evs = []
            t = t0
            for _ in range(r.randint(0, 2)):
                evs.append(self.mev('bulk_export', st, sh, t, 'search', None, 'Patient', purpose,
                                    attrs={'report': r.choice(['census', 'discharges-30d', 'clinic-schedule', 'payer-mix'])}))
                t += r.uniform(20, 200)
            if method == 'print':
                # many prints of report pages, each a few dozen to a few hundred records
                left = total
                while left > 0:
                    k = min(left, r.randint(20, 300))
                    evs.append(self.mev('bulk_export', st, sh, t, 'print', None, 'List', purpose, records=k, dest=dest))
                    left -= k
                    t += r.uniform(20, 180)
            else:
                parts = r.randint(1, 4)
                cuts = sorted(r.sample(range(1, total), parts - 1)) if total > parts else []
                sizes = [b - a for a, b in zip([0] + cuts, cuts + [total])]
                for k in sizes:
                    evs.append(self.mev('bulk_export', st, sh, t, 'export', None, 'Bundle', purpose, records=max(1, k), dest=dest))
                    t += r.uniform(30, 600)
            self.record('bulk_export', st, evs, self.records_reach(500), extra={'_records': total, '_dest': dest})
            return True
        return False

    def off_hours(self, i, r):
        h = self.h
        day = self.day_of(i)
        elig = [st for st in h.staff if not st.former and st.shifts and st.id not in self.used['off_hours']
                and (st.system in ('office', 'clinic', 'dialysis', 'rehab') or
                     (st.system in ('ward12', 'eight', 'ortho_phys', 'psych_phys', 'med_phys') and st.pref == 'day'))
                and (st.term is None or st.term > (day + 1) * D) and (st.hired is None or st.hired < day * D)]
        r.shuffle(elig)
        for st in elig:
            # between 22:30 and 04:30 local, at least 4 h from any of their shifts
            t0 = day * D + r.uniform(-1.5, 4.5) * H
            if t0 < self.first_day * D + H:
                continue
            if any(sh.s - 4 * H < t0 < sh.e + 4 * H for sh in st.shifts):
                continue
            if not self.free(st, t0, t0 + H):
                continue
            dept_pts = [en.pt for en in h.ward_encs.get(st.dept, []) if en.s <= t0 < en.e]
            if st.dept == 'outpatient':
                dept_pts = [x[1] for x in getattr(h, 'clinic_visits', []) if t0 - 14 * D < x[0] < t0]
            if st.dept == 'billing':
                dept_pts = [en.pt for en in h.encs if t0 - 20 * D < en.e < t0 - 2 * D]
            if st.dept == 'dialysis':
                dept_pts = list(h.dialysis)
            vpn = r.random() < 0.35
            ip = st.vpn if vpn else h.ws_ip(st.dept, r)
            sess = h.new_session(ip)
            evs = [self.mev('off_hours', st, None, t0, 'login', None, None, None, sess=sess)]
            t = t0 + r.uniform(30, 240)
            n = r.randint(4, 25)
            purpose = self.base_purpose(st)
            for k in range(n):
                if dept_pts and r.random() < 0.5:
                    p = r.choice(dept_pts)
                else:
                    p = r.choice(h.patients)
                if p is st.own:
                    continue
                if r.random() < 0.1:
                    evs.append(self.mev('off_hours', st, None, t, 'search', None, 'Patient', purpose, sess=sess))
                    t += r.uniform(10, 60)
                evs.append(self.mev('off_hours', st, None, t, 'read', p,
                                    r.choice(['Patient', 'DocumentReference', 'DiagnosticReport', 'Encounter']), purpose, sess=sess))
                t += r.uniform(20, 300)
            self.record('off_hours', st, evs, self.first_read(), extra={'_via': 'vpn' if vpn else 'workstation'})
            return True
        return False

    def denied_probing(self, i, r):
        roles = ('physician', 'nurse', 'midwife', 'registrar', 'billing_clerk', 'pharmacist', 'lab_technologist', 'resident')
        h = self.h
        flagged = [p for p in h.patients if p.flag]
        psych = [p for p in h.patients if p.psych]
        for sh in self.pick_shift('denied_probing', r, self.day_of(i), lambda s: s.st.role in roles and s.dept != 'psychiatry'):
            st = sh.st
            dur = r.uniform(3, 20) * MIN
            t0 = r.uniform(sh.s + H, sh.e - H - dur)
            if not self.free(st, t0, t0 + dur):
                continue
            n = r.randint(6, 30)
            times = sorted(r.uniform(t0, t0 + dur) for _ in range(n))
            evs = []
            purpose = self.base_purpose(st)
            for t in times:
                x = r.random()
                p = r.choice(flagged) if x < 0.4 else r.choice(psych) if x < 0.8 and psych else r.choice(h.patients)
                if p is st.own:
                    continue
                evs.append(self.mev('denied_probing', st, sh, t, 'read', p, r.choice(['DocumentReference', 'Condition', 'DiagnosticReport']),
                                    purpose, outcome='denied'))
                if r.random() < 0.1:
                    evs.append(self.mev('denied_probing', st, sh, t + r.uniform(2, 10), 'search', None, 'Patient', purpose))
            self.record('denied_probing', st, evs, self.nth_denied(5))
            return True
        return False

    def break_glass_habit(self, i, r):
        roles = ('physician', 'nurse', 'midwife', 'resident')
        for sh in self.pick_shift('break_glass_habit', r, self.day_of(i), lambda s: s.st.role in roles, min_len=8 * H):
            st = sh.st
            n = r.randint(4, 12)
            t0 = sh.s + r.uniform(0.5, 2) * H
            gap = min(r.uniform(10, 60) * MIN, (sh.e - t0 - 15 * MIN) / n)
            if gap < 3 * MIN or not self.free(st, t0, t0 + n * gap):
                continue
            targets = self.strangers(st, r, t0, n)
            if len(targets) < 4:
                continue
            evs = []
            t = t0
            for p in targets:
                for k in range(r.randint(1, 3)):
                    evs.append(self.mev('break_glass_habit', st, sh, t + k * r.uniform(15, 90), 'read', p,
                                        ['DocumentReference', 'Observation', 'DiagnosticReport'][k], 'ETREAT'))
                t += gap * r.uniform(0.6, 1.4)
            self.record('break_glass_habit', st, evs, self.nth_distinct_read(4, 'ETREAT'))
            return True
        return False

    def consent_violation(self, i, r):
        h = self.h
        day = self.day_of(i)

        def pred(s):
            return s.st.role == 'researcher' or (s.st.role == 'physician' and s.dept in ('psychiatry', 'outpatient', 'dialysis')
                                                 and s.kind == 'day')
        shifts = self.pick_shift('consent_violation', r, day, pred, min_len=5 * H)
        # researchers for most instances, physicians for some
        shifts.sort(key=lambda s: (0 if (s.st.role == 'researcher') == (r.random() < 0.6) else 1))
        for sh in shifts:
            st = sh.st
            t0 = r.uniform(sh.s + 0.5 * H, sh.e - 3.5 * H)
            span = r.uniform(0.5, 3) * H
            if not self.free(st, t0, t0 + span):
                continue
            n = r.randint(1, 10)
            withdrawn = [p for p in h.patients if self.h.consent_at(p, t0) == 'withdrawn']
            absent = [p for p in (h.dialysis if r.random() < 0.3 else h.patients) if self.h.consent_at(p, t0) is None]
            targets = []
            for k in range(n):
                src = withdrawn if (k % 2 == 0 and withdrawn) else absent
                p = r.choice(src)
                if p not in targets and p is not st.own:
                    targets.append(p)
            starts = sorted(r.uniform(t0, t0 + span) for _ in targets)
            evs = []
            for t, p in zip(starts, targets):
                for k in range(r.randint(1, 4)):
                    tt = t + k * r.uniform(20, 120)
                    if self.h.consent_at(p, tt) == 'granted':
                        continue
                    evs.append(self.mev('consent_violation', st, sh, tt, 'read', p,
                                        r.choice(['Observation', 'DiagnosticReport', 'Condition', 'DocumentReference']), 'HRESCH'))
            if not evs:
                continue
            self.record('consent_violation', st, evs, self.nth_event(1))
            return True
        return False

    def run(self):
        h = self.h
        r = h.rng('misuse')
        plan = ['volume_burst', 'breadth', 'unrelated_charts', 'snooping', 'vip_curiosity', 'bulk_export',
                'off_hours', 'denied_probing', 'break_glass_habit', 'consent_violation']
        for scen in plan:
            rs = h.rng('misuse/' + scen)
            fn = getattr(self, scen)
            for i in range(self.n):
                ok = fn(i, rs)
                if not ok:
                    # fall back to a nearby day, later first
                    step = max(1, self.n // max(1, h.days - self.first_day))
                    for j in range(1, 2 * h.days):
                        ii = i + ((j + 1) // 2) * step * (1 if j % 2 else -1)
                        if 0 <= ii < self.n and fn(ii, rs):
                            break
                    else:
                        h.counters['misuse_not_placed_' + scen] += 1
        # after termination: every leaver and former employee once, then again if needed
        rs = h.rng('misuse/after_termination')
        gone = [s for s in h.staff if s.term is not None]
        gone.sort(key=lambda s: (s.term, s.id))
        rs.shuffle(gone)
        for i in range(self.n):
            self.after_termination(i, rs, gone[i % len(gone)])


# ---------------------------------------------------------------- output

def write_outputs(h, out):
    os.makedirs(out, exist_ok=True)
    out = os.path.realpath(out)
    h.events.sort(key=lambda e: (e[0], e[1]))
    prefix = 'sbrh-%d-' % h.seed
    with open(os.path.join(out, 'events.jsonl'), 'w') as f:
        for n, e in enumerate(h.events):
            e[4] = prefix + str(n)
            body = json.dumps(e[2], separators=(',', ':'))
            f.write('{"id":"%s",%s\n' % (e[4], body[1:]))
    with open(os.path.join(out, 'labels.jsonl'), 'w') as f:
        for lab in sorted(h.labels, key=lambda x: (x['evs'][0][0], x['scenario'])):
            evs = lab['evs']
            obj = {'scenario': lab['scenario'], 'actor': lab['actor'], 'patient': lab['patient'],
                   'start': h.iso(evs[0][0]), 'end': h.iso(evs[-1][0]),
                   'events': [e[4] for e in evs], 'detectable_at': h.iso(evs[lab['detect']][0])}
            f.write(json.dumps(obj, separators=(',', ':')) + '\n')
    with open(os.path.join(out, 'truth.jsonl'), 'w') as f:
        for lab in sorted(h.labels, key=lambda x: (x['evs'][0][0], x['scenario'])):
            st = h.by_id[lab['actor']]
            extra = {k[1:]: v for k, v in lab.items() if k.startswith('_')}
            obj = {'scenario': lab['scenario'], 'actor': lab['actor'], 'role': st.role, 'dept': st.dept,
                   'system': st.system, 'pref': st.pref, 'hired': h.iso(st.hired) if st.hired is not None else None,
                   'terminated': h.iso(st.term) if st.term is not None else None,
                   'n_events': len(lab['evs']), 'start': h.iso(lab['evs'][0][0]), 'dept_at_event': lab['evs'][0][2]['actor'].get('dept'),
                   **extra}
            f.write(json.dumps(obj) + '\n')

    def iso_or_empty(t):
        return '' if t is None else h.iso(t)
    with open(os.path.join(out, 'roster.csv'), 'w') as f:
        f.write('actor,role,dept,hired,terminated,patient\n')
        for st in sorted(list(h.staff) + list(h.svc.values()), key=lambda s: s.id):
            hired = st.hired if st.hired is not None else None
            if hired is None and st.role != 'service':
                hired = -(200 + (int(st.id[2:]) % 3000)) * D + 7 * H
            f.write('%s,%s,%s,%s,%s,%s\n' % (st.id, st.role, st.dept, iso_or_empty(hired), iso_or_empty(st.term),
                                             st.own.mrn if st.own is not None else ''))
    with open(os.path.join(out, 'vip.csv'), 'w') as f:
        f.write('patient,category\n')
        for p in h.patients:
            if p.flag:
                f.write('%s,%s\n' % (p.mrn, p.flag))
    with open(os.path.join(out, 'care_team.csv'), 'w') as f:
        f.write('patient,actor,dept,start,end\n')
        for p, a, d, s, e in sorted(h.care_rows, key=lambda x: (x[3] if x[3] is not None else -1e18)):
            f.write('%s,%s,%s,%s,%s\n' % (p.mrn, a or '', d or '', iso_or_empty(s), iso_or_empty(e)))
    with open(os.path.join(out, 'consent.csv'), 'w') as f:
        f.write('patient,purpose,status,time\n')
        rows = [(t, p.mrn, s) for p in h.patients for t, s in p.consent]
        for t, m, s in sorted(rows):
            f.write('%s,HRESCH,%s,%s\n' % (m, s, h.iso(t)))
    with open(os.path.join(out, 'export_allow.csv'), 'w') as f:
        f.write('destination\n')
        for d in ('dw://warehouse.sbrh.internal/*', 'sftp://research-enclave.sbrh.internal/*',
                  'https://claims.clearinghouse-partner.com/*', 'printer:sbrh/*', 'smb://sbrh-fs01.sbrh.internal/*',
                  'fax:*'):
            f.write(d + '\n')
    with open(os.path.join(out, 'links.csv'), 'w') as f:
        f.write('actor,patient,relation\n')
        for a, m, rel in h.links:
            f.write('%s,%s,%s\n' % (a, m, rel))
    with open(os.path.join(out, 'custos.toml'), 'w') as f:
        f.write('# written by scripts/other-hospital/gen.py (seed %d)\n' % h.seed)
        f.write('[reference]\n')
        for k, fn in (('vip', 'vip.csv'), ('roster', 'roster.csv'), ('care_team', 'care_team.csv'),
                      ('consent', 'consent.csv'), ('export_allow', 'export_allow.csv'), ('links', 'links.csv')):
            f.write('%s = "%s"\n' % (k, os.path.join(out, fn)))
        f.write('\n[privacy]\ndemo_key = true\n')
    return out


def summary(h):
    from collections import Counter
    c = Counter(l['scenario'] for l in h.labels)
    n_ev = len(h.events)
    no_ctx = sum(1 for e in h.events if 'role' not in e[2]['actor'])
    staff_active = [s for s in h.staff if not s.former]
    lines = [
        'events %d (%d without role/dept, %.1f%%)' % (n_ev, no_ctx, 100.0 * no_ctx / max(1, n_ev)),
        'staff %d active (%d hired during the run, %d left during it), %d former; patients %d; encounters %d; days %d'
        % (len(staff_active), sum(1 for s in staff_active if s.hired is not None),
           sum(1 for s in staff_active if s.term is not None), sum(1 for s in h.staff if s.former),
           len(h.patients), len(h.encs), h.days),
        'care-team rows %d (%d assignments left out); orders %d (%d in the feed)'
        % (len(h.care_rows), h.counters['care_rows_missing'], len(h.orders), h.counters['orders_in_feed']),
        'instances: ' + ', '.join('%s %d' % kv for kv in sorted(c.items())),
        'counters: ' + ', '.join('%s %d' % kv for kv in sorted(h.counters.items())),
    ]
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--days', type=int, default=14)
    ap.add_argument('--staff', type=int, default=250)
    ap.add_argument('--patients', type=int, default=7000)
    ap.add_argument('--seed', type=int, default=2718)
    ap.add_argument('--start', default='2026-10-05', help='local start date (UTC-5), t=0 at its midnight')
    ap.add_argument('--explain', action='store_true', help='also write why.tsv: event id and the kind of work it belongs to')
    args = ap.parse_args()
    h = Hospital(args)
    h.build_staff()
    h.build_patients()
    h.build_ties()
    h.build_rota()
    h.build_encounters()
    h.gen_benign()
    Injector(h).run()
    out = write_outputs(h, args.out)
    if args.explain:
        with open(os.path.join(out, 'why.tsv'), 'w') as f:
            for e in h.events:
                f.write('%s\t%s\n' % (e[4], e[3] or e[5]))
    print('wrote %s' % out)
    print(summary(h))


if __name__ == '__main__':
    main()
