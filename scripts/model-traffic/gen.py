"""Labelled clinical-model inference traffic with real attacks on real models.

Writes, into ``--out``:

* ``events.jsonl``: one native ``inference`` event per model call, in time
  order, ids ``inf-NNNNNN`` numbered in that order;
* ``labels.jsonl``: one line per attack instance (scenario, actor, start,
  end, detectable_at, the ids of all its calls in time order);
* ``attacks.json``: what each attack achieved (the proof it is real) and
  the models' held-out accuracy.

Deterministic: the same arguments give byte-identical files (numpy's
seeded generators, single-threaded BLAS, no hash-order iteration).
See README.md for what is modelled.
"""

from __future__ import annotations

import os

# Before numpy loads: one BLAS thread keeps float sums, and so the models
# and every output, identical from run to run.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402

import models  # noqa: E402
from benign import Hospital  # noqa: E402
from plan import Planner  # noqa: E402
from traffic import Call, fmt_time, parse_time  # noqa: E402


def _num(v: float) -> str:
    """A JSON number without exponent; the shortest that reads back as
    the same double."""
    s = np.format_float_positional(float(v), unique=True, trim="-")
    return "0" if s == "-0" else s


def _js(s: str) -> str:
    return json.dumps(s)


def render(call: Call, eid: str, ep: models.Endpoint) -> str:
    a = call.actor
    actor = f'{{"id":{_js(a.id)},"role":{_js(a.role)}'
    if a.dept:
        actor += f',"dept":{_js(a.dept)}'
    actor += "}"
    parts = [
        f'"id":{_js(eid)}', f'"time":{_js(fmt_time(call.t))}', '"kind":"inference"',
        f'"actor":{actor}', f'"model":{{"id":{_js(ep.id)},"version":{_js(ep.version)}}}',
    ]
    if call.patient is not None:
        parts.append(f'"patient":{_js(call.patient)}')
    feats = ",".join(_num(v) for v in call.x)
    parts.append(f'"input":{{"features":[{feats}]}}')
    sr = "true" if call.scores_returned else "false"
    parts.append(f'"output":{{"label":{_js(ep.classes[call.label])},"score":{_num(call.score)},"scores_returned":{sr}}}')
    if call.purpose is not None:
        parts.append(f'"purpose":{_js(call.purpose)}')
    return "{" + ",".join(parts) + "}"


def generate(args) -> tuple[dict[str, bytes], dict]:
    """Everything in memory: file name -> bytes, and a summary."""
    t_start = time.perf_counter()
    start = parse_time(args.start)
    eps = models.build(args.seed)
    hosp = Hospital(eps, start, args.days, args.clinicians, args.seed)
    benign = hosp.generate()
    # Benign outputs: the model on exactly the features that are written.
    for key, ep in eps.items():
        mine = [c for c in benign if c.model == key]
        if mine:
            lab, score = ep.answer(np.array([c.x for c in mine]))
            for c, lb, sc in zip(mine, lab, score):
                c.label, c.score = int(lb), float(sc)
    instances = Planner(hosp, args.seed, args.quiet_hours).run()

    calls = benign + [c for inst in instances for c in inst.calls]
    # Stable: ties keep generation order.
    order = sorted(range(len(calls)), key=lambda i: calls[i].t)
    ids = {}
    lines = []
    for n, i in enumerate(order, 1):
        eid = f"inf-{n:06d}"
        ids[i] = eid
        lines.append(render(calls[i], eid, eps[calls[i].model]))
    events = ("\n".join(lines) + "\n").encode()

    base = len(benign)
    labels, report = [], []
    k = base
    for inst in instances:
        idx = list(range(k, k + len(inst.calls)))
        k += len(inst.calls)
        idx.sort(key=lambda i: (calls[i].t, i))
        ev = [ids[i] for i in idx]
        t0, t1 = calls[idx[0]].t, calls[idx[-1]].t
        labels.append(json.dumps({
            "scenario": inst.scenario, "actor": inst.actor.id,
            "start": fmt_time(t0), "end": fmt_time(t1), "detectable_at": fmt_time(t0),
            "events": ev,
        }, separators=(",", ":")))
        gaps = np.diff([calls[i].t for i in idx]) / 1000.0
        report.append({
            "scenario": inst.scenario, "actor": inst.actor.id, "caller": inst.caller,
            "model": f"{eps[inst.model].id}@{eps[inst.model].version}",
            "queries": len(ev), "start": fmt_time(t0), "end": fmt_time(t1),
            "median_gap_seconds": round(float(np.median(gaps)), 3) if len(gaps) else None,
            "outcome": inst.outcome,
        })
    labels_b = ("\n".join(labels) + "\n").encode()

    kinds = Counter()
    for i, c in enumerate(calls):
        if c.attack is not None:
            kinds["attack"] += 1
        else:
            kinds[caller_kind(c.actor.id)] += 1
    summary = {
        "seed": args.seed, "start": fmt_time(start), "days": args.days,
        "clinicians": args.clinicians, "quiet_hours": args.quiet_hours,
        "events": len(calls),
        "events_by_caller_kind": dict(sorted(kinds.items())),
        "models": {ep.id: {"version": ep.version, "algorithm": _describe(ep),
                           "train_records": int(len(ep.train_X)),
                           "holdout_accuracy": round(ep.test_accuracy, 4),
                           "patients": int(len(ep.population_X))}
                   for ep in eps.values()},
        "instances": report,
    }
    attacks_b = (json.dumps(summary, indent=2) + "\n").encode()
    summary["seconds"] = round(time.perf_counter() - t_start, 2)
    return {"events.jsonl": events, "labels.jsonl": labels_b, "attacks.json": attacks_b}, summary


def caller_kind(actor: str) -> str:
    if actor.startswith(("dr-", "rn-")):
        return "clinician"
    if actor.startswith("svc-"):
        return actor
    if actor.startswith("api-client-"):
        return "benign api-client"
    return "research"


def _describe(ep: models.Endpoint) -> str:
    steps = [type(s).__name__ for s in ep.pipeline]
    return " -> ".join(steps)


def print_summary(summary: dict, out: str) -> None:
    w = sys.stderr.write
    w(f"wrote {summary['events']} events to {out} in {summary['seconds']} s\n")
    for k, v in summary["events_by_caller_kind"].items():
        w(f"  {k:<22} {v:>7}\n")
    for mid, m in summary["models"].items():
        w(f"  model {mid}@{m['version']}: {m['algorithm']}, held-out accuracy {m['holdout_accuracy']}\n")
    w(f"{'scenario':<26} {'model':<26} {'actor':<15} {'queries':>7}  outcome\n")
    for r in summary["instances"]:
        o = r["outcome"]
        kind = r["scenario"].removesuffix("_slow")
        if kind == "inversion":
            res = f"confidence({o['target_label']}) {o['start_confidence']} -> {o['final_confidence']} ({o['stopped']})"
        elif kind == "attribute_inference":
            res = (f"{o['feature']}: {o['recovered_fraction']:.0%} of {o['victims']} recovered "
                   f"(prior guess {o['prior_guess_fraction']:.0%})")
        else:
            res = (f"surrogate agreement {o['agreement_on_holdout']:.1%} "
                   f"(majority {o['majority_class_baseline']:.1%})")
        w(f"{r['scenario']:<26} {r['model']:<26} {r['actor']:<15} {r['queries']:>7}  {res}\n")


def check(files: dict[str, bytes], args) -> list[str]:
    """Self-check of the generated files; returns the problems found."""
    problems = []
    eps = {ep.id: ep for ep in models.build(args.seed).values()}
    seen, last = {}, ""
    rows = {m: [] for m in eps}
    for line in files["events.jsonl"].decode().splitlines():
        e = json.loads(line)
        if e["id"] in seen:
            problems.append(f"duplicate id {e['id']}")
        seen[e["id"]] = e
        if e["time"] < last:
            problems.append(f"{e['id']} out of time order")
        last = e["time"]
        ep = eps[e["model"]["id"]]
        f = e["input"]["features"]
        if len(f) != ep.dim or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in f):
            problems.append(f"{e['id']}: bad features")
        if e["model"]["version"] != ep.version or e["kind"] != "inference":
            problems.append(f"{e['id']}: bad model or kind")
        rows[ep.id].append(e)
    for mid, evs in rows.items():
        ep = eps[mid]
        lab, score = ep.answer(np.array([e["input"]["features"] for e in evs], dtype=float))
        for e, lb, sc in zip(evs, lab, score):
            if e["output"]["label"] != ep.classes[lb] or e["output"]["score"] != sc:
                problems.append(f"{e['id']}: output is not the model's answer")
    for line in files["labels.jsonl"].decode().splitlines():
        lb = json.loads(line)
        evs = [seen.get(i) for i in lb["events"]]
        if any(e is None for e in evs):
            problems.append(f"{lb['scenario']}/{lb['actor']}: unknown event id")
            continue
        if any(e["actor"]["id"] != lb["actor"] for e in evs):
            problems.append(f"{lb['scenario']}/{lb['actor']}: event of another actor")
        if evs[0]["time"] != lb["start"] or evs[-1]["time"] != lb["end"] or lb["detectable_at"] != lb["start"]:
            problems.append(f"{lb['scenario']}/{lb['actor']}: start/end/detectable_at")
        if [e["time"] for e in evs] != sorted(e["time"] for e in evs):
            problems.append(f"{lb['scenario']}/{lb['actor']}: events not in time order")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--clinicians", type=int, default=60)
    p.add_argument("--start", default="2026-03-02T00:00:00Z", help="RFC 3339, UTC midnight is usual")
    p.add_argument("--quiet-hours", type=float, default=0.0,
                   help="no attack call in the first H hours (a learning period for detectors)")
    p.add_argument("--check", action="store_true",
                   help="after writing, validate the files and regenerate to confirm byte-identical output")
    args = p.parse_args(argv)
    if args.days < 1 or args.clinicians < 8:
        p.error("--days must be >= 1 and --clinicians >= 8")

    try:
        files, summary = generate(args)
    except ValueError as e:
        p.error(str(e))
    os.makedirs(args.out, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)
    print_summary(summary, args.out)
    if args.check:
        problems = check(files, args)
        again, _ = generate(args)
        for name in files:
            if hashlib.sha256(files[name]).digest() != hashlib.sha256(again[name]).digest():
                problems.append(f"{name}: a second run with the same arguments differs")
        for pr in problems[:50]:
            sys.stderr.write(f"check: {pr}\n")
        sys.stderr.write(f"check: {'ok' if not problems else f'{len(problems)} problem(s)'}\n")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
