//! The workforce and its shifts.
//!
//! Head counts follow [`COMPOSITION`] scaled to `--staff`. Ward staff,
//! radiologists, pharmacists and registrars work 12-hour day (07–19) or
//! night (19–07) shifts, about 30% of them nights; billing clerks and
//! researchers work office hours (08–17) on weekdays. Each person works a
//! day with probability about 0.5 (0.4 at weekends; office staff 0.92 on
//! weekdays, rarely at weekends), with starts a few minutes early and
//! overtime at the end. When nobody of a ward role (or of a service
//! department) would be on a day or night shift, one of them is called in.
//!
//! Churn: about 4% of the staff are new hires (hired at 06:00 on a day
//! inside the run, no shifts before), about 4% are terminated inside the
//! run (their shift is cut at the termination time and nothing follows),
//! and about 5% extra left in the 60 days before the run (roster only).
//! Ids are `emp-NNNN` numbered in a shuffled order, so an id says nothing
//! about department or role.

use std::collections::BTreeMap;

use super::Gen;
use super::model::{COMPOSITION, DAY, Dept, HOUR, MINUTE, Role, Shift, ShiftKind, Staff};

/// Monday = 0 … Sunday = 6, of the day holding `ms`.
pub(super) fn weekday(ms: i64) -> i64 {
    (ms.div_euclid(DAY) + 3).rem_euclid(7)
}

impl Gen {
    pub(super) fn build_staff(&mut self) {
        let target = self.cfg.staff.max(COMPOSITION.len());
        let total: u32 = COMPOSITION.iter().map(|c| c.2).sum();
        let mut counts: Vec<usize> = COMPOSITION
            .iter()
            .map(|c| ((c.2 as f64 * target as f64 / f64::from(total)).round() as usize).max(1))
            .collect();
        // Put the rounding difference on the largest group (ward nurses).
        let sum: usize = counts.iter().sum();
        let big = (0..counts.len()).max_by_key(|&i| counts[i]).unwrap_or(0);
        counts[big] = (counts[big] + target).saturating_sub(sum).max(1);

        let mut people: Vec<(Dept, Role, ShiftKind)> = Vec::new();
        for (c, &n) in COMPOSITION.iter().zip(&counts) {
            for j in 0..n {
                let kind = match c.1 {
                    Role::BillingClerk | Role::Researcher => ShiftKind::Office,
                    Role::Therapist => ShiftKind::Day,
                    // Every group of two or more has a night worker.
                    _ if n >= 2 && j == 0 => ShiftKind::Night,
                    _ if n >= 2 && j == 1 => ShiftKind::Day,
                    _ if self.rng.chance(0.3) => ShiftKind::Night,
                    _ => ShiftKind::Day,
                };
                people.push((c.0, c.1, kind));
            }
        }
        let employed = people.len();
        // Former staff: the same mix, drawn at random.
        let former = ((employed as f64 * 0.05).round() as usize).max(2);
        for _ in 0..former {
            let c = COMPOSITION[self.rng.index(COMPOSITION.len())];
            let kind = match c.1 {
                Role::BillingClerk | Role::Researcher => ShiftKind::Office,
                _ => ShiftKind::Day,
            };
            people.push((c.0, c.1, kind));
        }

        // Shuffled id numbers.
        let mut numbers: Vec<usize> = (0..people.len()).collect();
        for i in (1..numbers.len()).rev() {
            let j = self.rng.index(i + 1);
            numbers.swap(i, j);
        }
        let mut ip_seq = [0u32; 13];
        for (k, &(dept, role, kind)) in people.iter().enumerate() {
            let n = ip_seq[dept as usize];
            ip_seq[dept as usize] += 1;
            let ip = (10 << 24) | ((dept as u32 + 1) << 16) | ((n / 200) << 8) | (n % 200 + 20);
            let activity = (0.55 * self.rng.normal()).exp().clamp(0.3, 3.5);
            let hired = self.start - self.rng.between(30, 4000) as i64 * DAY + 9 * HOUR;
            let (former, terminated) = if k >= employed {
                let t = self.start - self.rng.between(1, 60) as i64 * DAY
                    + self.rng.between(9 * 60, 18 * 60) as i64 * MINUTE;
                (true, Some(t))
            } else {
                (false, None)
            };
            self.staff.push(Staff {
                id: format!("emp-{}", 1001 + numbers[k]),
                role,
                dept,
                kind,
                hired,
                terminated,
                former,
                activity,
                ip,
                shifts: Vec::new(),
            });
        }

        // Churn inside the run, among the employed.
        let days = self.days();
        let n_churn = ((employed as f64 * 0.04).round() as usize).max(2);
        let mut pool: Vec<usize> = (0..employed).collect();
        for _ in 0..2 * n_churn {
            if pool.is_empty() {
                break;
            }
            let i = pool.swap_remove(self.rng.index(pool.len()));
            if self.staff[i].kind == ShiftKind::Night && self.rng.chance(0.5) {
                continue; // keep the night coverage mostly intact
            }
            let last = (days - 1).max(1);
            let day = self.rng.between(1, last as u64) as i64;
            let hires = self.staff.iter().filter(|s| s.hired >= self.start).count();
            if hires < n_churn {
                self.staff[i].hired = self.start + day * DAY + 6 * HOUR;
            } else {
                let at = self.start
                    + day * DAY
                    + self.rng.between(8 * 60, 21 * 60) as i64 * MINUTE
                    + self.rng.below(60_000) as i64;
                self.staff[i].terminated = Some(at);
            }
        }

        for (i, id) in [(0u32, "svc-etl-1"), (1, "svc-claims-1")] {
            self.staff.push(Staff {
                id: id.to_owned(),
                role: Role::Service,
                dept: Dept::It,
                kind: ShiftKind::Batch,
                hired: self.start - 900 * DAY,
                terminated: None,
                former: false,
                activity: 1.0,
                ip: (10 << 24) | (13 << 16) | (1 << 8) | (10 + i),
                shifts: Vec::new(),
            });
        }
        for (i, s) in self.staff.iter().enumerate() {
            self.by_dept[s.dept as usize].push(i as u32);
        }
    }

    pub(super) fn build_schedules(&mut self) {
        let days = self.days();
        let n = self.staff.len();
        // works[i][d + 1]: staff i works the shift of day d (d from -1).
        let mut works = vec![vec![false; days as usize + 1]; n];
        let mut groups: BTreeMap<(Dept, Role, ShiftKind), Vec<usize>> = BTreeMap::new();
        for (i, s) in self.staff.iter().enumerate() {
            if !s.former && s.is_human() {
                groups.entry((s.dept, s.role, s.kind)).or_default().push(i);
            }
        }
        for (i, row) in works.iter_mut().enumerate() {
            let s = &self.staff[i];
            if s.former || !s.is_human() {
                continue;
            }
            for (k, w) in row.iter_mut().enumerate() {
                let day0 = self.start + (k as i64 - 1) * DAY;
                let weekend = weekday(day0) >= 5;
                let p = match (s.kind, weekend) {
                    (ShiftKind::Office, false) => 0.92,
                    (ShiftKind::Office, true) => 0.03,
                    (_, false) => 0.5,
                    (_, true) => 0.4,
                };
                *w = self.rng.chance(p);
            }
        }
        // Minimum coverage: one per (ward or service department, role, kind).
        for ((dept, role, kind), members) in &groups {
            if *kind == ShiftKind::Office || *role == Role::Therapist {
                continue;
            }
            let covered = dept.is_ward()
                || matches!(dept, Dept::Radiology | Dept::Pharmacy | Dept::Admissions);
            if !covered {
                continue;
            }
            // `k` indexes the day within every member's row, not `works`.
            #[allow(clippy::needless_range_loop)]
            for k in 0..=days as usize {
                let day0 = self.start + (k as i64 - 1) * DAY;
                let on = |i: &usize| {
                    let s = &self.staff[*i];
                    s.hired <= day0 + 6 * HOUR && s.terminated.is_none_or(|t| t > day0 + DAY)
                };
                // Emergency keeps two physicians and three nurses on, the
                // icu three nurses; everyone else one of each.
                let min = match (dept, role) {
                    (Dept::Emergency, Role::Physician) => 2,
                    (Dept::Emergency, Role::Nurse) | (Dept::Icu, Role::Nurse) => 3,
                    _ => 1,
                };
                let mut able: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|i| on(i) && !works[*i][k])
                    .collect();
                let mut working = members.iter().filter(|i| works[**i][k] && on(i)).count();
                while working < min && !able.is_empty() {
                    let i = able.swap_remove(self.rng.index(able.len()));
                    works[i][k] = true;
                    working += 1;
                }
            }
        }
        for (i, row) in works.iter().enumerate() {
            for (k, &w) in row.iter().enumerate() {
                if !w {
                    continue;
                }
                let day = k as i32 - 1;
                let day0 = self.start + i64::from(day) * DAY;
                let early = self.rng.below(20) as i64 * MINUTE;
                let late = (self.rng.exp() * 25.0) as i64 * MINUTE;
                let (start, end) = match self.staff[i].kind {
                    ShiftKind::Day => (day0 + 7 * HOUR - early, day0 + 19 * HOUR + late),
                    ShiftKind::Night => (day0 + 19 * HOUR - early, day0 + 31 * HOUR + late),
                    ShiftKind::Office => {
                        let s = day0 + 8 * HOUR + (self.rng.between(0, 80) as i64 - 40) * MINUTE;
                        (s, s + 9 * HOUR + late - early)
                    }
                    ShiftKind::Batch => continue,
                };
                let s = &self.staff[i];
                if start < s.hired {
                    continue;
                }
                let end = match s.terminated {
                    Some(t) if t <= start => continue,
                    Some(t) => end.min(t),
                    None => end,
                };
                if end <= self.start || start >= self.end {
                    continue;
                }
                let session = self.rng.next_u64() as u32;
                self.staff[i].shifts.push(Shift {
                    start,
                    end,
                    day,
                    session,
                });
            }
        }
        let night = self
            .staff
            .iter()
            .filter(|s| s.kind == ShiftKind::Night)
            .map(|s| s.shifts.len() as u64)
            .sum();
        self.count("night_shifts", night);
        let hires = self.staff.iter().filter(|s| s.hired >= self.start).count();
        self.count("new_hires", hires as u64);
    }
}
