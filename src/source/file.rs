//! JSON-lines input from files or standard input (`-`), read on a blocking
//! thread and sent in batches. All files go to one chain (`+file`,
//! partition 0) in the order given; each message records its file name and
//! line number.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use super::{SourceEvent, SourceMessage};
use crate::event::MAX_MESSAGE_BYTES;
use crate::ledger::ChainId;
use crate::metrics::metrics;

const BATCH: usize = 2048;

/// Reads `paths` line by line into `tx` until done or `stop` is set;
/// returns the number of lines. Runs on a blocking thread (call from
/// `spawn_blocking`). A line longer than the message limit is passed on cut
/// just past the limit (so the decoder refuses it as oversize, and nothing
/// more than the limit is held in memory) and the rest of it is skipped.
pub fn read_files(
    paths: &[PathBuf],
    tx: &mpsc::Sender<SourceEvent>,
    stop: &AtomicBool,
) -> std::io::Result<u64> {
    let chain = ChainId::file();
    if tx
        .blocking_send(SourceEvent::Assigned(vec![chain.clone()], None))
        .is_err()
    {
        return Ok(0);
    }
    let mut total = 0;
    for path in paths {
        if stop.load(Ordering::Relaxed) {
            break;
        }
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
            if stop.load(Ordering::Relaxed) {
                break;
            }
            line.clear();
            let limit = MAX_MESSAGE_BYTES as u64 + 2;
            if (&mut reader).take(limit).read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if line.len() as u64 == limit && line.last() != Some(&b'\n') {
                skip_line(&mut reader)?;
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
                arrived: std::time::Instant::now(),
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

/// Discards input up to and including the next newline.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}
