//! Read-only SQL over the ledger with DataFusion.
//!
//! Tables: `events`, `rejects` and `incidents`, over exactly the segments the chains'
//! manifests name as durable (a segment being written, or left by a crash,
//! is never read); with a [`Reference`] snapshot, also its `ref_*` tables
//! (in memory, see [`crate::detect::reference::tables`]). Only queries are allowed: DDL, DML and statements such as
//! `SET` are refused by DataFusion's SQL options before planning.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::{SQLOptions, SessionContext};

use datafusion::common::config::{ConfigFileDecryptionProperties, TableParquetOptions};

use crate::detect::reference::{Reference, tables};
use crate::ledger::{
    LedgerError, SegmentKey, Store, Table, events_schema, incidents_schema, rejects_schema,
};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("{0} is not a custos store (no custos-store.json)")]
    NoStore(String),
}

/// A session with the store's tables registered; `key` decrypts
/// encrypted segments.
pub async fn session(root: &Path, key: Option<&SegmentKey>) -> Result<SessionContext, QueryError> {
    let bucket = root
        .to_str()
        .is_some_and(crate::ledger::storage::is_bucket_url);
    if !bucket && !root.join("custos-store.json").is_file() {
        return Err(QueryError::NoStore(root.display().to_string()));
    }
    let store = Store::open_existing_with(root, key.cloned())?;
    let ctx = SessionContext::new();
    // Files are named by URL: `file:///…` in a folder, `s3://…` in a
    // bucket, read through the store's own client.
    let url_of: Box<dyn Fn(&str) -> String> = match store.bucket() {
        Some(bucket) => {
            let base = url::Url::parse(&bucket.url_of(""))
                .map_err(|e| LedgerError::InvalidOptions(format!("bucket URL: {e}")))?;
            ctx.register_object_store(&base, bucket.object_store());
            let bucket = bucket.clone();
            Box::new(move |rel| bucket.url_of(rel))
        }
        None => {
            let root = root.canonicalize().map_err(|e| LedgerError::io(root, e))?;
            Box::new(move |rel| root.join(rel).display().to_string())
        }
    };
    let mut events = Vec::new();
    let mut rejects = Vec::new();
    let mut incidents = Vec::new();
    for chain in store.chains()? {
        for line in store
            .manifest(&chain)?
            .into_iter()
            .filter(|l| !l.is_pruned())
        {
            // A segment under another key would fail the whole query later
            // with a less clear error.
            store.check_key(&line)?;
            let path = url_of(&line.file);
            match line.table {
                Table::Events => events.push(path),
                Table::Rejects => rejects.push(path),
                Table::Incidents => incidents.push(path),
            }
        }
    }
    register(&ctx, "events", events_schema(), events, key)?;
    register(&ctx, "rejects", rejects_schema(), rejects, key)?;
    register(&ctx, "incidents", incidents_schema(), incidents, key)?;
    Ok(ctx)
}

fn register(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    files: Vec<String>,
    key: Option<&SegmentKey>,
) -> Result<(), QueryError> {
    if files.is_empty() {
        let empty = MemTable::try_new(schema, vec![vec![]])?;
        ctx.register_table(name, Arc::new(empty))?;
        return Ok(());
    }
    let urls = files
        .iter()
        .map(ListingTableUrl::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let mut format = ParquetFormat::default();
    if let Some(key) = key {
        let mut options = TableParquetOptions::default();
        options.crypto.file_decryption = Some(ConfigFileDecryptionProperties {
            footer_key_as_hex: key.parquet_key_hex(),
            ..ConfigFileDecryptionProperties::default()
        });
        format = format.with_options(options);
    }
    let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// Registers the reference tables (`ref_vip`, `ref_roster`,
/// `ref_care_team`, `ref_consent`, `ref_export_allow`) of one snapshot.
pub fn register_reference(ctx: &SessionContext, reference: &Reference) -> Result<(), QueryError> {
    for (name, batch) in tables(reference) {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        ctx.register_table(name, Arc::new(table))?;
    }
    Ok(())
}

/// Runs one read-only statement.
pub async fn run(
    store: &Path,
    key: Option<&SegmentKey>,
    sql: &str,
) -> Result<Vec<RecordBatch>, QueryError> {
    run_with(store, key, None, sql).await
}

/// Runs one read-only statement, with the reference tables if given.
pub async fn run_with(
    store: &Path,
    key: Option<&SegmentKey>,
    reference: Option<&Reference>,
    sql: &str,
) -> Result<Vec<RecordBatch>, QueryError> {
    let ctx = session(store, key).await?;
    if let Some(reference) = reference {
        register_reference(&ctx, reference)?;
    }
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx.sql_with_options(sql, options).await?;
    Ok(df.collect().await?)
}
