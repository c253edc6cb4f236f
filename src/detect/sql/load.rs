//! Loading detector files and building the DataFusion session they run in.
//!
//! A file is accepted only when it is one read-only query (DataFusion's
//! SQL options refuse DDL, DML and statements such as `SET` before
//! planning), plans against the `recent` schema and the reference tables,
//! runs on empty tables, and its output satisfies the contract checked by
//! [`super::output::check_schema`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;

use super::output::check_schema;
use super::{REFERENCE_TABLES, SqlError, SqlProblem, reference_schema, window_schema};

/// Memory one run's queries may hold at once (DataFusion's memory pool);
/// a query that needs more fails with a resources error.
const MEMORY_LIMIT: usize = 512 * 1024 * 1024;

/// One loaded detector.
#[derive(Debug)]
pub(super) struct Query {
    /// `sql:<file stem>`.
    pub(super) name: String,
    pub(super) path: PathBuf,
    pub(super) sql: String,
}

/// Every `*.sql` file of `dir`, in name order: the ones that load, and a
/// problem for each one that does not (or for the folder itself).
pub(super) async fn load_dir(dir: &Path) -> (Vec<Query>, Vec<SqlProblem>) {
    let mut problems = Vec::new();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql") && p.is_file())
            .collect(),
        Err(e) => {
            problems.push(SqlProblem {
                path: dir.to_owned(),
                error: SqlError::Read(e),
            });
            return (Vec::new(), problems);
        }
    };
    paths.sort();
    let empty = match session(Vec::new(), &[]) {
        Ok(ctx) => ctx,
        Err(error) => {
            problems.push(SqlProblem {
                path: dir.to_owned(),
                error,
            });
            return (Vec::new(), problems);
        }
    };
    let mut queries = Vec::with_capacity(paths.len());
    for path in paths {
        match load_file(&empty, &path).await {
            Ok(q) => queries.push(q),
            Err(error) => problems.push(SqlProblem { path, error }),
        }
    }
    (queries, problems)
}

async fn load_file(ctx: &SessionContext, path: &Path) -> Result<Query, SqlError> {
    let sql = std::fs::read_to_string(path).map_err(SqlError::Read)?;
    let df = ctx.sql_with_options(&sql, read_only()).await?;
    check_schema(df.schema().as_arrow())?;
    // Planning alone misses what only the physical planner or execution
    // refuses (some correlated subqueries, argument types): run it once on
    // the empty tables.
    df.collect().await?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Query {
        name: format!("sql:{stem}"),
        path: path.to_owned(),
        sql,
    })
}

/// Only queries: no DDL, no DML, no `SET` or other statements.
pub(super) fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// A session with `recent` holding `window` and every reference table:
/// the given batches by name, an empty table of the standard schema for
/// each one not given.
pub(super) fn session(
    window: Vec<RecordBatch>,
    reference: &[(String, RecordBatch)],
) -> Result<SessionContext, SqlError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(MEMORY_LIMIT, 1.0)
        .build_arc()?;
    // One partition: detector runs share the machine with the pipeline and
    // should not take every core; the window is small enough for one.
    let config = SessionConfig::new().with_target_partitions(1);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    let recent = MemTable::try_new(window_schema(), vec![window])?;
    ctx.register_table("recent", Arc::new(recent))?;
    for (name, batch) in reference {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]])?;
        ctx.register_table(name.as_str(), Arc::new(table))?;
    }
    for name in REFERENCE_TABLES {
        if !reference.iter().any(|(n, _)| n == name) {
            let schema = reference_schema(name).expect("a standard reference table");
            ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
        }
    }
    Ok(ctx)
}
