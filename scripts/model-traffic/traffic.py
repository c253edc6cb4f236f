"""Shared pieces of the traffic: callers, one inference call, time.

Times are integer milliseconds since the Unix epoch (UTC); the hospital's
clock is UTC. A :class:`Call` carries the features exactly as sent; its
output is filled in by calling the model (benign calls in one batch per
model at the end, attack calls as the attack runs, since the attack needs
the answer to choose its next query).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import numpy as np

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass(frozen=True)
class Actor:
    id: str
    role: str
    dept: str | None = None


@dataclass
class Call:
    t: int
    actor: Actor
    model: str
    x: np.ndarray
    patient: str | None = None
    scores_returned: bool = False
    purpose: str | None = None
    attack: int | None = None  # index of the attack instance, if any
    label: int = -1
    score: float = float("nan")


def parse_time(s: str) -> int:
    """RFC 3339 (``Z`` or an offset) to epoch milliseconds."""
    d = _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return int(round(d.timestamp() * 1000))


def fmt_time(ms: int) -> str:
    """``2026-03-02T08:14:03.125Z``."""
    secs, milli = divmod(int(ms), 1000)
    d = _dt.datetime.fromtimestamp(secs, tz=_dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{milli:03d}Z"


def midnight(ms: int) -> int:
    return ms - ms % DAY


def weekday(ms: int) -> int:
    """0 = Monday."""
    return _dt.datetime.fromtimestamp(ms // 1000, tz=_dt.timezone.utc).weekday()


def exp_gaps(rng: np.random.Generator, n: int, mean_ms: float, floor_ms: int = 40) -> np.ndarray:
    """Inter-arrival times of a machine-rate caller: exponential with a
    floor (a round trip is never instant)."""
    return np.maximum(rng.exponential(mean_ms, size=n), floor_ms).astype(np.int64)


def spread(rng: np.random.Generator, n: int, windows: list[tuple[int, int]],
           sigma: float = 0.5) -> np.ndarray:
    """``n`` times spread through ``windows`` (sorted, disjoint) at an even
    pace with log-normal jitter: the first comes up to 10% into the
    windows' total length, the gaps fill 75-88% of it, and time outside
    the windows is skipped."""
    total = sum(b - a for a, b in windows)
    g = rng.lognormal(0.0, sigma, size=n)
    g = g / g.sum() * rng.uniform(0.75, 0.88) * total
    offs = rng.uniform(0.0, 0.1) * total + np.cumsum(g) - g[0]
    out = np.empty(n, dtype=np.int64)
    w, base = 0, 0.0
    for i, o in enumerate(offs):
        while w < len(windows) - 1 and o - base >= windows[w][1] - windows[w][0]:
            base += windows[w][1] - windows[w][0]
            w += 1
        a, b = windows[w]
        out[i] = min(a + int(o - base), b - 1)
    return np.maximum.accumulate(out)
