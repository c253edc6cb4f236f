//! JSON-lines input from files or standard input (`-`), read on a blocking
//! thread and sent in batches. All files go to one chain (`+file`,
//! partition 0) in the order given; each message records its file name and
//! line number.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use tokio::sync::mpsc;

use super::{SourceEvent, SourceMessage};
use crate::ledger::ChainId;
use crate::metrics::metrics;

/// The chain file input is stored in.
pub fn file_chain() -> ChainId {
    ChainId {
        stream: "+file".into(),
        partition: 0,
    }
}

const BATCH: usize = 2048;

/// Reads `paths` line by line into `tx`; returns the number of lines.
/// Runs on a blocking thread (call from `spawn_blocking`).
pub fn read_files(paths: &[PathBuf], tx: &mpsc::Sender<SourceEvent>) -> std::io::Result<u64> {
    let chain = file_chain();
    if tx
        .blocking_send(SourceEvent::Assigned(vec![chain.clone()]))
        .is_err()
    {
        return Ok(0);
    }
    let mut total = 0;
    for path in paths {
        let (name, reader): (String, Box<dyn Read>) = if path.as_os_str() == "-" {
            ("-".into(), Box::new(std::io::stdin()))
        } else {
            let file = std::fs::File::open(path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            (path.display().to_string(), Box::new(file))
        };
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let mut batch = Vec::with_capacity(BATCH);
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            number += 1;
            let end = line
                .iter()
                .rposition(|b| *b != b'\n' && *b != b'\r')
                .map_or(0, |i| i + 1);
            if line[..end].iter().all(u8::is_ascii_whitespace) {
                continue; // blank lines separate nothing; they are not messages
            }
            batch.push(SourceMessage {
                chain: chain.clone(),
                offset: None,
                file: Some((name.clone(), number)),
                key: None,
                payload: line[..end].to_vec(),
            });
            if batch.len() == BATCH {
                total += batch.len() as u64;
                metrics()
                    .messages_consumed
                    .with_label_values(&["file"])
                    .inc_by(batch.len() as u64);
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if tx.blocking_send(SourceEvent::Messages(full)).is_err() {
                    return Ok(total);
                }
            }
        }
        if !batch.is_empty() {
            total += batch.len() as u64;
            metrics()
                .messages_consumed
                .with_label_values(&["file"])
                .inc_by(batch.len() as u64);
            if tx.blocking_send(SourceEvent::Messages(batch)).is_err() {
                return Ok(total);
            }
        }
    }
    let _ = tx.blocking_send(SourceEvent::End);
    Ok(total)
}
