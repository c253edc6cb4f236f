//! The checkpoints a store keeps: `checkpoints/<stream>/<partition>.jsonl`,
//! one JSON line per signed checkpoint of one of the chain's logs, appended
//! and fsynced.
//!
//! ```text
//! {"note":"<C2SP signed note>","table":"events","time":"2026-11-28T16:40:00Z"}
//! ```
//!
//! The note is the evidence; `table` and `time` (when it was signed, UTC)
//! are for finding it. Sizes only grow from line to line of one table.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, NoteSigner, unverified_text};
use super::error::LedgerError;
use super::manifest::{ParsedLines, Table, parse_lines};
use super::storage::Storage;

/// One stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    pub note: String,
    pub table: Table,
    pub time: String,
}

/// A checkpoint file's lines.
pub(crate) fn parse(bytes: &[u8]) -> ParsedLines<CheckpointLine> {
    parse_lines(bytes, "checkpoint")
}

/// The appender of a chain's checkpoint file. The chain writer owns it
/// (under the chain's lock).
pub(crate) struct CheckpointLog {
    storage: Arc<dyn Storage>,
    rel: String,
    /// Durable length of the file.
    len: u64,
    /// Size of each table's last checkpoint (index = `Table as usize`).
    last: [u64; Table::ALL.len()],
}

impl CheckpointLog {
    /// Opens (creating) the file; a torn last line (a crash during append)
    /// is cut off. A line that does not parse is corruption.
    pub fn open(storage: Arc<dyn Storage>, rel: String) -> Result<CheckpointLog, LedgerError> {
        let path = storage.describe(&rel);
        let bytes = storage.read(&rel)?.unwrap_or_default();
        let parsed = parse(&bytes);
        let mut last = [0u64; Table::ALL.len()];
        let mut len = 0;
        for (no, end, line) in parsed.lines {
            let bad = |what: String| LedgerError::corrupt(&path, format!("line {no}: {what}"));
            let line = line.map_err(bad)?;
            let checkpoint = unverified_text(&line.note)
                .and_then(Checkpoint::parse)
                .map_err(|e| bad(e.to_string()))?;
            let slot = &mut last[line.table as usize];
            *slot = (*slot).max(checkpoint.size);
            len = end;
        }
        if parsed.torn_tail {
            tracing::warn!(file = %path.display(), "checkpoint file ends in a torn line (crash during append); truncating it");
            storage.truncate(&rel, len)?;
        }
        Ok(CheckpointLog {
            storage,
            rel,
            len,
            last,
        })
    }

    /// Length of the file as this log wrote it.
    pub fn written_len(&self) -> u64 {
        self.len
    }

    /// Size of the table's last checkpoint (0 if none).
    pub fn last_size(&self, table: Table) -> u64 {
        self.last[table as usize]
    }

    /// Signs `checkpoint` and appends it, fsynced.
    pub fn append(
        &mut self,
        table: Table,
        checkpoint: &Checkpoint,
        signer: &NoteSigner,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<CheckpointLine, LedgerError> {
        let note = signer
            .sign(&checkpoint.body())
            .map_err(|e| LedgerError::Internal(format!("signing a checkpoint: {e}")))?;
        let line = CheckpointLine {
            note,
            table,
            time: time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let mut text = serde_json::to_string(&line)
            .map_err(|e| LedgerError::Internal(format!("checkpoint line: {e}")))?;
        text.push('\n');
        let n = text.len() as u64;
        self.storage
            .append(&self.rel, self.len, text.into(), true)?;
        self.len += n;
        let slot = &mut self.last[table as usize];
        *slot = (*slot).max(checkpoint.size);
        Ok(line)
    }
}

/// Reads a chain's checkpoint lines (for serving them); a torn tail is left
/// out, a line that does not parse is an error.
pub(crate) fn read(storage: &dyn Storage, rel: &str) -> Result<Vec<CheckpointLine>, LedgerError> {
    let Some(bytes) = storage.read(rel)? else {
        return Ok(Vec::new());
    };
    let path = storage.describe(rel);
    parse(&bytes)
        .lines
        .into_iter()
        .map(|(_, _, line)| line.map_err(|what| LedgerError::corrupt(&path, what)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_a_torn_tail_is_seen() {
        let line = CheckpointLine {
            note: "o\n1\nAA==\n\n— k x\n".into(),
            table: Table::Rejects,
            time: "2026-11-28T16:40:00Z".into(),
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.starts_with("{\"note\":"));
        let parsed = parse(format!("{text}\n{{\"note\":1}}\n{{\"no").as_bytes());
        assert!(parsed.torn_tail);
        assert_eq!(parsed.lines[0].2.as_ref().unwrap(), &line);
        assert!(parsed.lines[1].2.is_err());
    }
}
