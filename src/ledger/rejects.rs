//! Reading a chain's rejected messages back, for an operator who unseals
//! them (`custos rejects show`). The ledger hands out the stored bytes
//! as they are, sealed or not, with what the record says of them; opening
//! them is the caller's business (the ledger holds no keys).

use std::path::Path;

use arrow::array::{Array, AsArray, BinaryArray, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{Int64Type, UInt64Type};
use serde_json::Value;

use super::error::LedgerError;
use super::manifest::Table;
use super::record::{blake3_hex, is_tombstone};
use super::segment::read_columns;
use super::{ChainId, Store};

/// One stored row of a `rejects` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReject {
    pub chain: ChainId,
    pub seq: u64,
    pub offset: i64,
    /// `src.file` and `src.line` of the record (file ingest only).
    pub file: Option<String>,
    pub line: Option<u64>,
    pub reason: String,
    pub detail: String,
    /// The `key` and `payload` columns: the stored bytes.
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The record's `payload_sealed` / `key_sealed`: how the bytes were
    /// sealed (`None`: stored as received).
    pub payload_sealed: Option<String>,
    pub key_sealed: Option<String>,
    /// The row was erased: its bytes and reason are gone (a tombstone).
    pub erased: bool,
    /// Whether the stored bytes have the BLAKE3 and length the record
    /// gives (if not, the store was changed: `custos verify` says where).
    pub matches_record: bool,
}

impl Store {
    /// Calls `each` for every durable reject of `chain` in seq order, or
    /// only for the one with `seq`; returns how many it was called for (0
    /// when the log holds no such seq).
    pub fn read_rejects<E: From<LedgerError>>(
        &self,
        chain: &ChainId,
        seq: Option<u64>,
        mut each: impl FnMut(StoredReject) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut n = 0;
        for line in self.manifest(chain)? {
            if line.table != Table::Rejects || line.is_pruned() {
                continue;
            }
            let row = match seq {
                None => None,
                Some(s) if (line.first_seq..line.end_seq()).contains(&s) => {
                    Some((s - line.first_seq) as usize)
                }
                Some(_) => continue,
            };
            let file = self.segment(&line.file)?;
            let path = &file.path;
            let names = [
                "seq", "offset", "reason", "detail", "key", "payload", "record",
            ];
            for batch in read_columns(&file, &names, row, self.key())? {
                for reject in rows(path, chain, &batch)? {
                    n += 1;
                    each(reject)?;
                }
            }
        }
        Ok(n)
    }
}

/// The rejects of one batch read with the columns of `read_rejects`.
fn rows(
    path: &Path,
    chain: &ChainId,
    batch: &RecordBatch,
) -> Result<Vec<StoredReject>, LedgerError> {
    let bad = |what: &str| LedgerError::corrupt(path, format!("rejects column {what}"));
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| bad(&format!("{name} is missing")))
    };
    let string = |name: &str| -> Result<&StringArray, LedgerError> {
        col(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| bad(&format!("{name} is not a string")))
    };
    let binary = |name: &str| -> Result<&BinaryArray, LedgerError> {
        col(name)?
            .as_binary_opt::<i32>()
            .ok_or_else(|| bad(&format!("{name} is not binary")))
    };
    let seqs: &UInt64Array = col("seq")?
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| bad("seq is not UInt64"))?;
    let offsets = col("offset")?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| bad("offset is not Int64"))?;
    let (reasons, details, records) = (string("reason")?, string("detail")?, string("record")?);
    let (keys, payloads) = (binary("key")?, binary("payload")?);
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let record: Value = serde_json::from_str(records.value(i))
            .map_err(|_| bad(&format!("record of seq {} is not JSON", seqs.value(i))))?;
        let text = |name: &str| record.get(name).and_then(Value::as_str).map(str::to_owned);
        let src = record.get("src");
        let key = keys.is_valid(i).then(|| keys.value(i).to_vec());
        let payload = payloads.value(i).to_vec();
        let facts = |bytes: &[u8]| (blake3_hex(bytes), bytes.len() as u64);
        let stated =
            |hash: &str, len: &str| Some((text(hash)?, record.get(len).and_then(Value::as_u64)?));
        let matches_record = Some(facts(&payload)) == stated("payload_blake3", "payload_len")
            && key.as_deref().map(facts) == stated("key_blake3", "key_len");
        out.push(StoredReject {
            chain: chain.clone(),
            seq: seqs.value(i),
            offset: offsets.value(i),
            file: src
                .and_then(|s| s.get("file"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            line: src.and_then(|s| s.get("line")).and_then(Value::as_u64),
            reason: reasons.value(i).to_owned(),
            detail: details.value(i).to_owned(),
            payload_sealed: text("payload_sealed"),
            key_sealed: text("key_sealed"),
            erased: is_tombstone(records.value(i)),
            key,
            payload,
            matches_record,
        });
    }
    Ok(out)
}
