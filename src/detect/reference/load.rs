//! Loading the reference tables from the files the `[reference]` section
//! names, into one [`Reference`] snapshot.
//!
//! Guarantees:
//! - patient identifiers are pseudonymized with the events' own
//!   [`Pseudonymizer`] as each row is read; the raw value is dropped there
//!   and never kept, logged or quoted in an error or a row problem;
//! - a file that cannot be read, or lacks a required column, fails the
//!   whole load with a [`ReferenceError`] naming the file (the caller keeps
//!   whatever snapshot it had);
//! - a bad row is a [`RowProblem`] (`path:line: reason`), skipped; every
//!   other row loads;
//! - a later row for the same key replaces an earlier one where a table is
//!   keyed (a VIP's category, a staff member's record); care-team and
//!   consent rows accumulate.
//!
//! File formats (columns in any order, extra columns ignored):
//!
//! | table | columns |
//! |---|---|
//! | `vip` | `patient`, `category` (default `vip`, lowercased) |
//! | `roster` | `actor`, `role`, `dept`, `hired`, `terminated`, `patient` |
//! | `care_team` | `patient`, `actor` and/or `dept`, `start`, `end` |
//! | `consent` | `patient`, `purpose`, `status` (`granted`/`withdrawn`), `time` |
//! | `export_allow` | `destination` (a trailing `*` makes a prefix) |
//! | `links` | `actor`, `patient`, `relation` (default `family`, lowercased) |

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::file::{Row, Shape, read};
use super::{CareAssignment, ConsentStatus, Loaded, Reference, Staff};
use crate::event::Pseudonymizer;

/// The six table names, as used in metrics, logs and SQL (`ref_<name>`).
pub const TABLES: [&str; 6] = [
    "vip",
    "roster",
    "care_team",
    "consent",
    "export_allow",
    "links",
];

/// The `[reference]` section: one optional file per table (`.csv` or
/// `.parquet`, relative to the working directory) and how often to look
/// for changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferenceConfig {
    pub vip: Option<PathBuf>,
    pub roster: Option<PathBuf>,
    pub care_team: Option<PathBuf>,
    pub consent: Option<PathBuf>,
    pub export_allow: Option<PathBuf>,
    pub links: Option<PathBuf>,
    /// Seconds between checks of the files' modification time and size.
    pub reload_secs: u64,
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        ReferenceConfig {
            vip: None,
            roster: None,
            care_team: None,
            consent: None,
            export_allow: None,
            links: None,
            reload_secs: 30,
        }
    }
}

impl ReferenceConfig {
    /// The configured files with their table names. An empty path counts
    /// as unset, so `CUSTOS_REFERENCE_VIP=` turns a table off.
    pub fn files(&self) -> Vec<(&'static str, &Path)> {
        let all = [
            &self.vip,
            &self.roster,
            &self.care_team,
            &self.consent,
            &self.export_allow,
            &self.links,
        ];
        TABLES
            .into_iter()
            .zip(all)
            .filter_map(|(t, p)| p.as_deref().map(|p| (t, p)))
            .filter(|(_, p)| !p.as_os_str().is_empty())
            .collect()
    }

    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if !(1..=86_400).contains(&self.reload_secs) {
            problems.push(format!("{at}.reload_secs must be 1 to 86400"));
        }
        for (table, path) in self.files() {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !ext.eq_ignore_ascii_case("csv") && !ext.eq_ignore_ascii_case("parquet") {
                problems.push(format!(
                    "{at}.{table} {}: must end in .csv or .parquet",
                    path.display()
                ));
            } else if !path.is_file() {
                problems.push(format!("{at}.{table} {}: no such file", path.display()));
            }
        }
    }
}

/// A reference file that could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot read reference file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reference file {} has no `{column}` column", path.display())]
    MissingColumn { path: PathBuf, column: String },
    #[error("reference file {}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
}

/// A row that was skipped, and why. `line` is the 1-based line in a CSV
/// file, or the 1-based row in a Parquet file. The reason never quotes a
/// cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// One of [`TABLES`].
    pub table: &'static str,
    pub path: PathBuf,
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// Loads every configured table; unconfigured tables stay empty and are
/// marked as not loaded.
pub fn load(
    cfg: &ReferenceConfig,
    pseudo: &Pseudonymizer,
) -> Result<(Reference, Vec<RowProblem>), ReferenceError> {
    let mut r = Reference::default();
    let mut problems = Vec::new();
    let mut loaded = Loaded::default();
    for (table, path) in cfg.files() {
        let p = &mut problems;
        match table {
            "vip" => {
                load_vip(path, pseudo, &mut r, p)?;
                loaded.vip = true;
            }
            "roster" => {
                load_roster(path, pseudo, &mut r, p)?;
                loaded.roster = true;
            }
            "care_team" => {
                load_care(path, pseudo, &mut r, p)?;
                loaded.care_team = true;
            }
            "consent" => {
                load_consent(path, pseudo, &mut r, p)?;
                loaded.consent = true;
            }
            "export_allow" => {
                load_export_allow(path, &mut r, p)?;
                loaded.export_allow = true;
            }
            _ => {
                debug_assert_eq!(table, "links");
                load_links(path, pseudo, &mut r, p)?;
                loaded.links = true;
            }
        }
    }
    r.mark_loaded(loaded);
    Ok((r, problems))
}

type Problems<'a> = &'a mut Vec<RowProblem>;

fn load_vip(
    path: &Path,
    pseudo: &Pseudonymizer,
    r: &mut Reference,
    p: Problems,
) -> Result<(), ReferenceError> {
    let shape = Shape {
        table: "vip",
        columns: &["patient", "category"],
        required: &[&["patient"]],
    };
    read(path, &shape, p, |mut row: Row| {
        let patient = pseudo.patient(&row.req("patient")?);
        let category = row
            .opt("category")
            .map_or("vip".into(), |c| c.to_lowercase());
        r.add_vip(patient, category);
        Ok(())
    })
}

fn load_roster(
    path: &Path,
    pseudo: &Pseudonymizer,
    r: &mut Reference,
    p: Problems,
) -> Result<(), ReferenceError> {
    let shape = Shape {
        table: "roster",
        columns: &["actor", "role", "dept", "hired", "terminated", "patient"],
        required: &[&["actor"]],
    };
    read(path, &shape, p, |mut row: Row| {
        let actor = row.req("actor")?;
        let staff = Staff {
            role: row.opt("role"),
            dept: row.opt("dept"),
            hired: row.time("hired")?,
            terminated: row.time("terminated")?,
            patient: row.opt("patient").map(|p| pseudo.patient(&p)),
        };
        if let (Some(h), Some(t)) = (staff.hired, staff.terminated)
            && t < h
        {
            return Err("`terminated` is before `hired`".into());
        }
        r.add_staff(actor, staff);
        Ok(())
    })
}

fn load_care(
    path: &Path,
    pseudo: &Pseudonymizer,
    r: &mut Reference,
    p: Problems,
) -> Result<(), ReferenceError> {
    let shape = Shape {
        table: "care_team",
        columns: &["patient", "actor", "dept", "start", "end"],
        required: &[&["patient"], &["actor", "dept"]],
    };
    read(path, &shape, p, |mut row: Row| {
        let patient = pseudo.patient(&row.req("patient")?);
        let a = CareAssignment {
            actor: row.opt("actor"),
            dept: row.opt("dept"),
            start: row.time("start")?,
            end: row.time("end")?,
        };
        if a.actor.is_none() && a.dept.is_none() {
            return Err("`actor` and `dept` are both empty".into());
        }
        if let (Some(s), Some(e)) = (a.start, a.end)
            && e < s
        {
            return Err("`end` is before `start`".into());
        }
        r.add_care(patient, a);
        Ok(())
    })
}

fn load_consent(
    path: &Path,
    pseudo: &Pseudonymizer,
    r: &mut Reference,
    p: Problems,
) -> Result<(), ReferenceError> {
    let shape = Shape {
        table: "consent",
        columns: &["patient", "purpose", "status", "time"],
        required: &[&["patient"], &["purpose"], &["status"], &["time"]],
    };
    read(path, &shape, p, |mut row: Row| {
        let patient = pseudo.patient(&row.req("patient")?);
        let purpose = row.req("purpose")?;
        let status = row.req("status")?;
        let status = if status.eq_ignore_ascii_case("granted") {
            ConsentStatus::Granted
        } else if status.eq_ignore_ascii_case("withdrawn") {
            ConsentStatus::Withdrawn
        } else {
            return Err("`status` must be `granted` or `withdrawn`".into());
        };
        let time = row.time("time")?.ok_or("`time` is empty")?;
        r.add_consent(patient, purpose, time, status);
        Ok(())
    })
}

fn load_export_allow(path: &Path, r: &mut Reference, p: Problems) -> Result<(), ReferenceError> {
    let shape = Shape {
        table: "export_allow",
        columns: &["destination"],
        required: &[&["destination"]],
    };
    read(path, &shape, p, |mut row: Row| {
        r.add_export_allow(row.req("destination")?);
        Ok(())
    })
}

fn load_links(
    path: &Path,
    pseudo: &Pseudonymizer,
    r: &mut Reference,
    p: Problems,
) -> Result<(), ReferenceError> {
    let shape = Shape {
        table: "links",
        columns: &["actor", "patient", "relation"],
        required: &[&["actor"], &["patient"]],
    };
    read(path, &shape, p, |mut row: Row| {
        let actor = row.req("actor")?;
        let patient = pseudo.patient(&row.req("patient")?);
        let relation = row
            .opt("relation")
            .map_or("family".into(), |c| c.to_lowercase());
        // The relation is quoted in findings: a word, not free text (which
        // could carry a name).
        let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ');
        if relation.len() > 32 || !relation.chars().all(word) {
            return Err(
                "`relation` must be a word of up to 32 letters, digits, `_`, `-` or spaces".into(),
            );
        }
        r.add_link(actor, patient, relation);
        Ok(())
    })
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
