//! Personal ties between the workforce and the patients: what a hospital's
//! identity matching (the patient index against HR records: names,
//! addresses, emergency contacts) finds, written to the roster's `patient`
//! column and to `links.csv`.
//!
//! * About 35% of staff are patients of the hospital themselves: the
//!   roster names their own record.
//! * Each member of staff has 0–3 family members (0: 25%, 1: 35%, 2: 25%,
//!   3: 15%) and 0–2 neighbours (0: 50%, 1: 35%, 2: 15%) among the
//!   patients, drawn from the whole population; about 5% of staff have a
//!   family member who works at the hospital too (their link is the other's
//!   own record).
//!
//! Flagged patients are never someone's record or relative (they belong to
//! `vip_curiosity`). Tied patients are admitted and treated like anyone
//! else, so staff meet their relatives and coworkers in ordinary work now
//! and then; those reads are benign (with a treatment relationship) and
//! counted in the summary.
//!
//! Ties are drawn from a stream of their own (the seed with a salt), so
//! the other draws of the workload are as they were without them; what
//! they change is which events exist: no one works on their own record
//! (`Gen::push`), and the `snooping` scenario reads people one knows.

use std::collections::BTreeSet;

use super::Gen;
use super::model::NONE;
use crate::source::synth::rng::Rng;

/// Salt of the ties' random stream.
const SALT: u64 = 0x7469_6573_0000_0001;

/// A personal tie of a member of staff to a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TieKind {
    Family,
    Neighbour,
}

impl TieKind {
    pub(super) fn name(self) -> &'static str {
        match self {
            TieKind::Family => "family",
            TieKind::Neighbour => "neighbour",
        }
    }
}

/// Who is tied to whom.
#[derive(Debug)]
pub(super) struct Ties {
    /// Per staff index: their own patient record, or [`NONE`].
    pub own: Vec<u32>,
    /// Per patient: the staff member whose own record it is, or [`NONE`].
    pub owner: Vec<u32>,
    /// (staff, patient, kind), sorted.
    pub links: BTreeSet<(u32, u32, TieKind)>,
}

impl Ties {
    pub(super) fn none() -> Self {
        Ties {
            own: Vec::new(),
            owner: Vec::new(),
            links: BTreeSet::new(),
        }
    }

    /// `actor`'s links, by patient.
    pub(super) fn links_of(&self, actor: u32) -> impl Iterator<Item = &(u32, u32, TieKind)> {
        self.links
            .range((actor, 0, TieKind::Family)..(actor + 1, 0, TieKind::Family))
    }

    /// Whether a link (of any kind) ties `actor` to `patient`.
    pub(super) fn linked(&self, actor: u32, patient: u32) -> bool {
        (self.links)
            .range((actor, patient, TieKind::Family)..=(actor, patient, TieKind::Neighbour))
            .next()
            .is_some()
    }
}

impl Gen {
    pub(super) fn build_ties(&mut self) {
        let mut rng = Rng::new(self.cfg.seed ^ SALT);
        let n = self.flags.len();
        let mut ties = Ties {
            own: vec![NONE; self.staff.len()],
            owner: vec![NONE; n],
            links: BTreeSet::new(),
        };
        // A patient nobody is yet, unflagged; none after many tries (a
        // population hardly larger than the staff).
        let free = |ties: &Ties, rng: &mut Rng, flags: &[Option<super::model::Flag>]| {
            (0..1000).find_map(|_| {
                let p = rng.index(n) as u32;
                (flags[p as usize].is_none() && ties.owner[p as usize] == NONE).then_some(p)
            })
        };
        let humans: Vec<u32> = (0..self.staff.len() as u32)
            .filter(|&i| self.staff[i as usize].is_human())
            .collect();
        for &i in &humans {
            if rng.chance(0.35)
                && let Some(p) = free(&ties, &mut rng, &self.flags)
            {
                ties.own[i as usize] = p;
                ties.owner[p as usize] = i;
            }
        }
        let patients: Vec<u32> = ties.own.iter().copied().filter(|&p| p != NONE).collect();
        for &i in &humans {
            let family = rng.choose(&[(0u32, 25), (1, 35), (2, 25), (3, 15)]);
            let neighbours = rng.choose(&[(0u32, 50), (1, 35), (2, 15)]);
            for (kind, k) in [(TieKind::Family, family), (TieKind::Neighbour, neighbours)] {
                for _ in 0..k {
                    let Some(p) = free(&ties, &mut rng, &self.flags) else {
                        continue;
                    };
                    // One relation per pair (a relative is not also a
                    // neighbour here).
                    if !ties.linked(i, p) {
                        ties.links.insert((i, p, kind));
                    }
                }
            }
            if rng.chance(0.05) && !patients.is_empty() {
                let p = patients[rng.index(patients.len())];
                if ties.owner[p as usize] != i {
                    ties.links.insert((i, p, TieKind::Family));
                }
            }
        }
        self.count("staff_with_own_patient_record", patients.len() as u64);
        self.count("personal_links", ties.links.len() as u64);
        self.ties = ties;
    }

    /// Whether `actor` is tied to `patient` outside of work: their own
    /// record, a link, or the own record of a coworker of their department.
    pub(super) fn tied(&self, actor: u32, patient: u32) -> bool {
        let t = &self.ties;
        let dept = self.staff[actor as usize].dept;
        patient != NONE
            && (t
                .owner
                .get(patient as usize)
                .is_some_and(|&o| o == actor || o != NONE && self.staff[o as usize].dept == dept)
                || t.linked(actor, patient))
    }

    /// `actor`'s family and neighbours.
    pub(super) fn relatives(&self, actor: u32) -> Vec<u32> {
        self.ties.links_of(actor).map(|l| l.1).collect()
    }

    /// The own records of `actor`'s coworkers: the other members of their
    /// department who are patients.
    pub(super) fn coworker_records(&self, actor: u32) -> Vec<u32> {
        let dept = self.staff[actor as usize].dept;
        (self.ties.own.iter().enumerate())
            .filter(|&(i, &p)| p != NONE && i as u32 != actor && self.staff[i].dept == dept)
            .map(|(_, &p)| p)
            .collect()
    }
}
