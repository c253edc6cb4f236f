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
            let cut = line.len() as u64 == limit && line.last() != Some(&b'\n');
            if cut {
                skip_line(&mut reader)?;
            }
            number += 1;
            // A cut line keeps all it has, so it stays over the limit even
            // when the cut falls on carriage returns.
            let end = if cut {
                line.len()
            } else {
                line.iter()
                    .rposition(|b| *b != b'\n' && *b != b'\r')
                    .map_or(0, |i| i + 1)
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Vec<SourceMessage> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, bytes).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        read_files(&[path], &tx, &AtomicBool::new(false)).unwrap();
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let SourceEvent::Messages(m) = e {
                out.extend(m);
            }
        }
        out
    }

    #[test]
    fn line_ends_are_not_part_of_a_message() {
        let got = read(b"{\"a\":1}\r\n\n  \n{\"b\":2}");
        let lines: Vec<_> = got.iter().map(|m| m.file.clone().unwrap().1).collect();
        assert_eq!(lines, [1, 4]);
        assert_eq!(got[0].payload, b"{\"a\":1}");
        assert_eq!(got[1].payload, b"{\"b\":2}");
    }

    #[test]
    fn a_line_cut_at_the_limit_stays_over_it_even_on_carriage_returns() {
        // A complete object, padding up to the cut, and the cut falling on
        // two carriage returns: trimming them would bring the message back
        // to the limit and let the object through, the rest of the line
        // unread.
        let mut line = b"{\"a\":1}".to_vec();
        line.resize(MAX_MESSAGE_BYTES, b' ');
        line.extend_from_slice(b"\r\rmore of the line\n{\"b\":2}\n");
        let got = read(&line);
        assert_eq!(got.len(), 2);
        assert!(
            got[0].payload.len() > MAX_MESSAGE_BYTES,
            "refused as oversize"
        );
        assert_eq!(got[1].payload, b"{\"b\":2}");
        assert_eq!(got[1].file.as_ref().unwrap().1, 2);
    }
}
