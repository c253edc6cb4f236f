//! Keeping the reference tables current: reload them when a file changes.
//!
//! [`ReferenceWatch`] holds the snapshot in force as an `Arc<Reference>`;
//! readers take a clone of the `Arc` and keep a consistent snapshot for as
//! long as they hold it. Every `reload_secs` ([`ReferenceWatch::due`]) the
//! owner calls [`ReferenceWatch::reload_if_changed`], which compares each
//! file's modification time and size with those seen at the last attempt
//! and, if any differ (or a file appeared or vanished), loads all tables
//! again into a new snapshot and swaps it in.
//!
//! Guarantees:
//! - a reload that fails (a file unreadable, a column missing) leaves the
//!   previous snapshot in force; it is retried when a file changes again,
//!   not at every check;
//! - the stamps are taken before the files are read, so a file written
//!   during a load is loaded again at the next check;
//! - logs and metrics name tables, files, counts and line numbers only,
//!   never a cell (see [`super::load`]).
//!
//! Loading reads files and hashes identifiers: call it off the async
//! threads (`spawn_blocking`). Writers should replace a file by renaming a
//! complete one over it; a file caught half-written loads what it holds
//! and is reloaded once complete.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Reference;
use super::load::{ReferenceConfig, ReferenceError, RowProblem, TABLES, load};
use crate::event::Pseudonymizer;
use crate::metrics::metrics;

/// Row problems logged one by one per load; the rest are counted.
const LOGGED_PROBLEMS: usize = 20;

/// A file's identity for change detection: (modification time, length),
/// or None when it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

/// The reference snapshot in force, and what it was loaded from.
pub struct ReferenceWatch {
    cfg: ReferenceConfig,
    pseudo: Pseudonymizer,
    current: Arc<Reference>,
    stamps: Vec<(PathBuf, Stamp)>,
    checked: Instant,
}

impl ReferenceWatch {
    /// Loads every configured table; fails if any file cannot be used.
    pub fn new(
        cfg: ReferenceConfig,
        pseudo: Pseudonymizer,
    ) -> Result<(ReferenceWatch, Vec<RowProblem>), ReferenceError> {
        let stamps = stamps(&cfg);
        let (reference, problems) = load(&cfg, &pseudo)?;
        report(&reference, &problems, "reference tables loaded");
        let watch = ReferenceWatch {
            cfg,
            pseudo,
            current: Arc::new(reference),
            stamps,
            checked: Instant::now(),
        };
        Ok((watch, problems))
    }

    /// The snapshot in force.
    pub fn current(&self) -> Arc<Reference> {
        Arc::clone(&self.current)
    }

    /// Whether `reload_secs` have passed since the last check.
    pub fn due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.checked) >= Duration::from_secs(self.cfg.reload_secs)
    }

    /// Reloads every table if any file changed since the last attempt.
    /// None: nothing changed. An error leaves the old snapshot in force.
    pub fn reload_if_changed(&mut self) -> Option<Result<Vec<RowProblem>, ReferenceError>> {
        self.checked = Instant::now();
        let stamps = stamps(&self.cfg);
        if stamps == self.stamps {
            return None;
        }
        self.stamps = stamps;
        match load(&self.cfg, &self.pseudo) {
            Ok((reference, problems)) => {
                report(&reference, &problems, "reference tables reloaded");
                self.current = Arc::new(reference);
                Some(Ok(problems))
            }
            Err(e) => {
                metrics().reference_reload_failures.inc();
                tracing::warn!(error = %e, "reference tables not reloaded; the previous ones stay in force");
                Some(Err(e))
            }
        }
    }
}

fn stamps(cfg: &ReferenceConfig) -> Vec<(PathBuf, Stamp)> {
    cfg.files()
        .into_iter()
        .map(|(_, path)| {
            let stamp = std::fs::metadata(path)
                .and_then(|m| Ok((m.modified()?, m.len())))
                .ok();
            (path.to_owned(), stamp)
        })
        .collect()
}

/// Logs a successful load and updates the metrics.
fn report(reference: &Reference, problems: &[RowProblem], message: &str) {
    let m = metrics();
    for (table, rows) in reference.row_counts() {
        m.reference_rows
            .with_label_values(&[table])
            .set(rows as i64);
    }
    for table in TABLES {
        let n = problems.iter().filter(|p| p.table == table).count();
        m.reference_row_problems
            .with_label_values(&[table])
            .inc_by(n as u64);
    }
    let [vip, roster, care_team, consent, export_allow, links] =
        reference.row_counts().map(|(_, n)| n);
    tracing::info!(
        vip,
        roster,
        care_team,
        consent,
        export_allow,
        links,
        row_problems = problems.len(),
        "{message}"
    );
    for p in problems.iter().take(LOGGED_PROBLEMS) {
        tracing::warn!(problem = %p, "reference row skipped");
    }
    if problems.len() > LOGGED_PROBLEMS {
        tracing::warn!(
            more = problems.len() - LOGGED_PROBLEMS,
            "more reference rows skipped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::PseudonymKey;

    fn write(path: &std::path::Path, text: &str) {
        // Through a rename, as writers should.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn reload_picks_up_a_change_and_keeps_the_old_snapshot_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let vip = dir.path().join("vip.csv");
        let allow = dir.path().join("allow.csv");
        write(&vip, "patient,category\nMRN-1,vip\n");
        write(&allow, "destination\nsftp://a/\n");
        let cfg = ReferenceConfig {
            vip: Some(vip.clone()),
            export_allow: Some(allow.clone()),
            reload_secs: 30,
            ..Default::default()
        };
        let p = Pseudonymizer::new(&PseudonymKey::demo());
        let (mut watch, problems) = ReferenceWatch::new(cfg, p.clone()).unwrap();
        assert!(problems.is_empty());
        let first = watch.current();
        assert_eq!(first.vip(&p.patient("MRN-1")), Some("vip"));
        assert!(watch.reload_if_changed().is_none(), "nothing changed");

        let now = Instant::now();
        assert!(!watch.due(now));
        assert!(watch.due(now + Duration::from_secs(31)));

        // A changed file (another length, so the stamp differs even where
        // modification times are coarse): both tables reload.
        write(
            &vip,
            "patient,category\nMRN-1,restricted\nMRN-2,vip\nMRN-3,bad,row\n",
        );
        let problems = watch.reload_if_changed().unwrap().unwrap();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 4);
        let second = watch.current();
        assert_eq!(second.vip(&p.patient("MRN-1")), Some("restricted"));
        assert_eq!(second.vip(&p.patient("MRN-2")), Some("vip"));
        assert!(second.export_allowed("sftp://a/"));
        assert_eq!(
            first.vip(&p.patient("MRN-1")),
            Some("vip"),
            "readers keep theirs"
        );

        // An unreadable file: the error is returned once, the snapshot stays.
        write(&vip, "category\nvip\n");
        let err = watch.reload_if_changed().unwrap().unwrap_err();
        assert!(matches!(err, ReferenceError::MissingColumn { .. }), "{err}");
        assert!(Arc::ptr_eq(&watch.current(), &second));
        assert!(
            watch.reload_if_changed().is_none(),
            "not retried until it changes"
        );
        // The vip file fixed, but the allow-list gone: still the old one.
        write(&vip, "patient\nMRN-9\n");
        std::fs::remove_file(&allow).unwrap();
        let err = watch.reload_if_changed().unwrap().unwrap_err();
        assert!(matches!(err, ReferenceError::Io { .. }), "{err}");
        assert!(Arc::ptr_eq(&watch.current(), &second));

        // Both usable: the new contents load.
        write(&allow, "destination\n");
        assert!(watch.reload_if_changed().unwrap().unwrap().is_empty());
        let third = watch.current();
        assert_eq!(third.vip(&p.patient("MRN-9")), Some("vip"));
        assert!(third.vip(&p.patient("MRN-1")).is_none());
        assert!(!third.export_allowed("sftp://a/"));
    }
}
