//! Running statements for the query surfaces: on a runtime of their own,
//! each within a memory limit, a time limit that really cancels, and a
//! bound on the rows answered.
//!
//! - **Own runtime.** Statements run on a dedicated multi-threaded tokio
//!   runtime (`api.query_threads` threads), so a heavy query never holds a
//!   thread the pipeline needs; `api.query_concurrency` statements run at
//!   once, the others wait.
//! - **Memory.** Each statement's session has a [`GreedyMemoryPool`] of
//!   `api.query_memory_mb`: a join, sort or aggregate that needs more fails
//!   with a memory-limit error (operators that can spill do so first).
//! - **Time.** Operators such as a cross join can produce batch after batch
//!   without ever returning to the runtime, so a `timeout` around the
//!   statement would only fire once they finish. Every operator of the
//!   physical plan is therefore wrapped in [`DeadlineExec`], whose stream
//!   checks the deadline each time it is polled: the first poll after the
//!   deadline ends the statement with a time-limit error, wherever it is.
//!   A `timeout` a little longer than the limit remains as a backstop for
//!   an operator that does much work inside one poll (a nested-loop join
//!   whose filter matches nothing compares a whole batch against the whole
//!   build side before polling again): the caller gets its error on time,
//!   and the statement stops at its next poll, its permit held until then.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, RecordBatchStream,
    SendableRecordBatchStream, execute_stream,
};
use futures::{Stream, StreamExt};

use super::audit::{Loggable, QueryLog, QueryRecord, Surface, report_query};
use super::guard::{self, Role};
use super::{QueryError, catalog};
use crate::detect::reference::Reference;
use crate::event::Pseudonymizer;
use crate::ledger::SegmentKey;

/// How long past the time limit the backstop waits.
const GRACE: Duration = Duration::from_secs(2);

/// The limits every statement runs under (`[api]` in the configuration).
#[derive(Debug, Clone)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub max_rows: usize,
    pub concurrency: usize,
    pub threads: usize,
}

impl Limits {
    pub fn from_config(api: &crate::config::ApiConfig) -> Limits {
        Limits {
            timeout: Duration::from_secs(api.query_timeout_secs),
            memory_bytes: usize::try_from(api.query_memory_mb.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            max_rows: api.max_rows,
            concurrency: api.query_concurrency,
            threads: api.query_threads,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&crate::config::ApiConfig::default())
    }
}

/// Who runs a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// A statement's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Answer {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The reference snapshot queries see (the live one, in a running
/// pipeline).
pub type ReferenceSource = Arc<dyn Fn() -> Arc<Reference> + Send + Sync>;

/// Runs statements over one store for every query surface.
#[derive(Clone)]
pub struct QueryEngine {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    key: Option<SegmentKey>,
    pseudonyms: Option<Pseudonymizer>,
    reference: Option<ReferenceSource>,
    limits: Limits,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    permits: Arc<tokio::sync::Semaphore>,
    log: Arc<QueryLog>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime blocks; this may run inside another runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryEngine")
            .field("root", &self.inner.root)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// An engine over the store at `root`; `key` decrypts segments,
    /// `pseudonyms` answers `pseudonym()`, `reference` gives the `ref_*`
    /// tables, `log` records every statement.
    pub fn new(
        root: PathBuf,
        key: Option<SegmentKey>,
        pseudonyms: Option<Pseudonymizer>,
        reference: Option<ReferenceSource>,
        limits: Limits,
        log: QueryLog,
    ) -> Result<QueryEngine, QueryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.threads.max(1))
            .thread_name("custos-query")
            .enable_all()
            .build()
            .map_err(|e| QueryError::Internal(format!("query runtime: {e}")))?;
        Ok(QueryEngine {
            inner: Arc::new(Inner {
                root,
                key,
                pseudonyms,
                reference,
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
                permits: Arc::new(tokio::sync::Semaphore::new(limits.concurrency.max(1))),
                limits,
                log: Arc::new(log),
            }),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Runs one statement for `caller` and records it in the query log,
    /// whatever becomes of it. The answer is returned only once its entry
    /// is durable; when the entry cannot be written, the statement is not
    /// answered ([`QueryError::Unrecorded`]).
    pub async fn execute(
        &self,
        caller: &Caller,
        surface: Surface,
        sql: &str,
    ) -> Result<Answer, QueryError> {
        let at = chrono::Utc::now();
        let started = Instant::now();
        let mut result = self.execute_unrecorded(caller, sql).await;
        let logged = Loggable::new(sql, self.inner.pseudonyms.as_ref());
        let mut record = QueryRecord {
            at,
            who: &caller.name,
            role: Some(caller.role),
            surface,
            sql: &logged.sql,
            rows: result.as_ref().ok().map(|a| a.rows() as u64),
            outcome: match &result {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            },
            error: None,
            elapsed: started.elapsed(),
        };
        let error = result.as_ref().err().map(|e| logged.error(&e.to_string()));
        record.error = error.as_deref();
        let entry = record.entry();
        let log = self.inner.log.clone();
        let appended = tokio::task::spawn_blocking(move || log.append(&entry))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let unrecorded;
        if let Err(why) = appended {
            tracing::error!(error = %why, "the query log cannot record a statement; it is not answered");
            unrecorded = logged.error(&why);
            record.outcome = "unrecorded";
            record.error = Some(&unrecorded);
            result = Err(QueryError::Unrecorded(why));
        }
        report_query(&record);
        result
    }

    /// The chain of the query log this engine appends to, once a
    /// statement was recorded.
    pub fn log_chain(&self) -> Option<crate::ledger::ChainId> {
        self.inner.log.chain()
    }

    /// Signs a checkpoint of the query log's entries not yet signed (at
    /// shutdown). Blocking.
    pub fn sign_log(&self) -> Result<(), crate::ledger::LedgerError> {
        self.inner.log.checkpoint(true)
    }

    async fn execute_unrecorded(&self, caller: &Caller, sql: &str) -> Result<Answer, QueryError> {
        guard::check_statement(sql)?;
        let limits = &self.inner.limits;
        // The permit is held by the task, not by the caller: a statement
        // the backstop gave up on still counts until it has really ended.
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        let deadline = Instant::now() + limits.timeout;
        let inner = self.inner.clone();
        let role = caller.role;
        let sql = sql.to_owned();
        let task = self.inner.handle.spawn(async move {
            let _permit = permit;
            inner.run(role, &sql, deadline).await
        });
        let abort = task.abort_handle();
        match tokio::time::timeout(limits.timeout + GRACE, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(QueryError::Internal(format!("query task: {e}"))),
            Err(_) => {
                abort.abort();
                Err(QueryError::TimeLimit(limits.timeout))
            }
        }
    }
}

impl Inner {
    async fn run(&self, role: Role, sql: &str, deadline: Instant) -> Result<Answer, QueryError> {
        let limits = &self.limits;
        let timed_out = |e: DataFusionError| {
            if Instant::now() >= deadline {
                QueryError::TimeLimit(limits.timeout)
            } else {
                QueryError::from(e)
            }
        };
        let env = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(limits.memory_bytes)))
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), env);
        let store = super::register_store(&ctx, &self.root, self.key.as_ref())?;
        if let Some(reference) = &self.reference {
            super::register_reference(&ctx, &reference())?;
        }
        catalog::register(&ctx, &store, self.pseudonyms.as_ref()).await?;
        // Scans are checked against every table the catalog made: the
        // views an analyst keeps still scan `events` underneath.
        let tables: HashSet<String> = catalog::table_names(&ctx);
        if !role.patient_level() {
            catalog::restrict_to(&ctx, catalog::ANALYST_TABLES)?;
        }
        let plan = ctx
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(|e| explain_missing_table(e, role))?;
        read_only().verify_plan(&plan)?;
        guard::check_plan(&plan, role, &tables)?;
        let physical = ctx
            .execute_logical_plan(plan)
            .await?
            .create_physical_plan()
            .await?;
        let schema = physical.schema();
        let physical = with_deadline(physical, deadline, limits.timeout)?;
        let mut stream = execute_stream(physical, ctx.task_ctx()).map_err(timed_out)?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(timed_out)?;
            rows += batch.num_rows();
            if rows > limits.max_rows {
                return Err(QueryError::TooManyRows(limits.max_rows));
            }
            batches.push(batch);
        }
        Ok(Answer { schema, batches })
    }
}

/// The SQL options every statement is planned under: no DDL, no DML, no
/// statements such as `SET`.
pub(crate) fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// An analyst naming a table their session does not hold is told why.
fn explain_missing_table(e: DataFusionError, role: Role) -> QueryError {
    let text = e.to_string();
    if !role.patient_level() && text.contains("table '") && text.contains("not found") {
        return QueryError::Forbidden(format!(
            "the {} role reads only the aggregate views ({}): {}",
            role.as_str(),
            catalog::ANALYST_TABLES.join(", "),
            text.trim_start_matches("Error during planning: ")
        ));
    }
    QueryError::from(e)
}

/// `plan` with every operator wrapped in a [`DeadlineExec`].
fn with_deadline(
    plan: Arc<dyn ExecutionPlan>,
    deadline: Instant,
    limit: Duration,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        Ok(Transformed::yes(
            Arc::new(DeadlineExec::new(node, deadline, limit)) as Arc<dyn ExecutionPlan>,
        ))
    })
    .map(|t| t.data)
}

/// The message of the error a statement over its time limit ends with.
const TIME_LIMIT: &str = "query time limit exceeded";

/// An operator that passes its input through, failing once the deadline
/// has passed.
#[derive(Debug, Clone)]
pub struct DeadlineExec {
    input: Arc<dyn ExecutionPlan>,
    deadline: Instant,
    limit: Duration,
}

impl DeadlineExec {
    fn new(input: Arc<dyn ExecutionPlan>, deadline: Instant, limit: Duration) -> Self {
        DeadlineExec {
            input,
            deadline,
            limit,
        }
    }
}

impl DisplayAs for DeadlineExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeadlineExec: limit={:?}", self.limit)
    }
}

impl ExecutionPlan for DeadlineExec {
    fn name(&self) -> &str {
        "DeadlineExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "DeadlineExec has one child".into(),
            ));
        }
        Ok(Arc::new(DeadlineExec::new(
            children.swap_remove(0),
            self.deadline,
            self.limit,
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let inner = self.input.execute(partition, context)?;
        Ok(Box::pin(DeadlineStream {
            inner,
            deadline: self.deadline,
            limit: self.limit,
            done: false,
        }))
    }
}

struct DeadlineStream {
    inner: SendableRecordBatchStream,
    deadline: Instant,
    limit: Duration,
    done: bool,
}

impl Stream for DeadlineStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if Instant::now() >= self.deadline {
            self.done = true;
            return Poll::Ready(Some(Err(DataFusionError::Execution(format!(
                "{TIME_LIMIT} ({:?})",
                self.limit
            )))));
        }
        self.inner.poll_next_unpin(cx)
    }
}

impl RecordBatchStream for DeadlineStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}
