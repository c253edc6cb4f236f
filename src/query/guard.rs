//! What a statement may do, checked before anything runs: only queries,
//! and for each role only what it may read.
//!
//! Two gates, both before execution:
//!
//! 1. [`check_statement`] parses the text and lets through exactly one
//!    `SELECT`/`WITH`/`VALUES` query, or an `EXPLAIN` of one. DDL, DML,
//!    `COPY`, `SET`, `RESET`, transactions, `CREATE EXTERNAL TABLE` and the
//!    rest are refused with the statement's name. (DataFusion's
//!    `SQLOptions` refuse the same again when the plan is built.)
//! 2. [`check_plan`] walks the logical plan, subqueries included: every
//!    scanned table must be one the catalog registered (no table function
//!    reads files: only `generate_series` and `range` are allowed), and
//!    `pseudonym()` needs the auditor or admin role. An analyst's session
//!    holds only the aggregate views (see [`super::catalog`]), so what they
//!    cannot name they cannot read.

use std::collections::HashSet;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use super::QueryError;

/// What a user may query (`docs/sql.md`, "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Every table and view, and `pseudonym()`.
    Auditor,
    /// Aggregate views and checkpoints only: no patient-level rows.
    Analyst,
    /// Like an auditor.
    Admin,
}

impl Role {
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "auditor" => Some(Role::Auditor),
            "analyst" => Some(Role::Analyst),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    /// Whether it may read patient-level rows (and look pseudonyms up).
    pub fn patient_level(self) -> bool {
        matches!(self, Role::Auditor | Role::Admin)
    }
}

/// Table functions a statement may call: they make numbers, read nothing.
const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range"];

/// Session variables a PostgreSQL client sets on connecting, which change
/// nothing here: `SET` of one of them is answered and ignored on the
/// PostgreSQL endpoint. Any other `SET` is refused.
const CLIENT_SETTINGS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "extra_float_digits",
    "intervalstyle",
    "statement_timeout",
];

/// Whether `sql` is `SET` (or `SET SESSION`) of a harmless client setting.
pub fn is_client_set(sql: &str) -> bool {
    let words: Vec<String> = sql
        .trim()
        .trim_end_matches(';')
        .split(|c: char| c.is_whitespace() || c == '=')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let name = match words.as_slice() {
        [set, session, name, ..] if set == "set" && session == "session" => name,
        [set, name, ..] if set == "set" => name,
        _ => return false,
    };
    CLIENT_SETTINGS.contains(&name.as_str())
}

/// Refuses anything but one query.
pub fn check_statement(sql: &str) -> Result<(), QueryError> {
    let statements = DFParser::parse_sql(sql)?;
    if statements.len() != 1 {
        return Err(QueryError::Refused(format!(
            "one statement at a time ({} given)",
            statements.len()
        )));
    }
    let statement = &statements[0];
    if is_query(statement) {
        Ok(())
    } else {
        Err(QueryError::Refused(format!(
            "{} is not allowed: the store is read-only, only queries (SELECT, WITH, VALUES, EXPLAIN) are",
            statement_name(statement)
        )))
    }
}

fn is_query(statement: &Statement) -> bool {
    match statement {
        Statement::Statement(s) => match s.as_ref() {
            SqlStatement::Query(_) => true,
            SqlStatement::Explain { statement, .. } => {
                matches!(statement.as_ref(), SqlStatement::Query(_))
            }
            _ => false,
        },
        Statement::Explain(e) => is_query(&e.statement),
        _ => false,
    }
}

/// The statement's leading keywords, e.g. `CREATE TABLE`, `COPY`, `SET`.
fn statement_name(statement: &Statement) -> String {
    match statement {
        Statement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE".into(),
        Statement::CopyTo(_) => "COPY".into(),
        Statement::Reset(_) => "RESET".into(),
        Statement::Explain(_) => "EXPLAIN of a statement that is not a query".into(),
        Statement::Statement(s) => {
            let text = s.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            match words.as_slice() {
                [first, second]
                    if matches!(
                        first.to_ascii_uppercase().as_str(),
                        "CREATE" | "DROP" | "ALTER" | "TRUNCATE"
                    ) =>
                {
                    format!(
                        "{} {}",
                        first.to_ascii_uppercase(),
                        second.to_ascii_uppercase()
                    )
                }
                [first, ..] => first.to_ascii_uppercase(),
                [] => "an empty statement".into(),
            }
        }
    }
}

/// Checks a planned statement against what `role` may read; `tables` are
/// the names the session registered.
pub fn check_plan(
    plan: &LogicalPlan,
    role: Role,
    tables: &HashSet<String>,
) -> Result<(), QueryError> {
    let mut problem: Option<QueryError> = None;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = scan.table_name.table();
            let function = name
                .split_once('(')
                .map(|(f, _)| f)
                .filter(|f| TABLE_FUNCTIONS.contains(f));
            if function.is_none() && !tables.contains(name) {
                problem = Some(QueryError::Refused(format!(
                    "table `{name}` cannot be queried: only the catalog's tables can (see docs/sql.md)"
                )));
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        if !role.patient_level() {
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    if let Expr::ScalarFunction(f) = e
                        && f.name() == "pseudonym"
                    {
                        problem = Some(QueryError::Forbidden(format!(
                            "pseudonym() needs the auditor or admin role, not {}",
                            role.as_str()
                        )));
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })?;
        }
        Ok(if problem.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    match problem {
        Some(p) => Err(p),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> String {
        match check_statement(sql) {
            Err(QueryError::Refused(m)) => m,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn only_queries_pass() {
        for ok in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "VALUES (1)",
            "EXPLAIN SELECT * FROM events",
            "select count(*) from events where patient = pseudonym('MRN-1');",
        ] {
            check_statement(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert!(refused("CREATE TABLE t (x INT)").starts_with("CREATE TABLE is not allowed"));
        assert!(refused("DROP TABLE events").starts_with("DROP TABLE"));
        assert!(refused("INSERT INTO events VALUES (1)").starts_with("INSERT"));
        assert!(refused("DELETE FROM events").starts_with("DELETE"));
        assert!(refused("UPDATE events SET kind = 'x'").starts_with("UPDATE"));
        assert!(refused("COPY events TO '/tmp/x.csv'").starts_with("COPY"));
        assert!(refused("SET datafusion.execution.batch_size = 1").starts_with("SET"));
        assert!(
            refused("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'")
                .starts_with("CREATE EXTERNAL TABLE")
        );
        assert!(refused("SELECT 1; SELECT 2").contains("one statement at a time"));
        assert!(refused("EXPLAIN DELETE FROM events").contains("not allowed"));
    }

    #[test]
    fn client_settings_are_told_apart() {
        assert!(is_client_set("SET extra_float_digits = 3"));
        assert!(is_client_set("set application_name to 'psql';"));
        assert!(is_client_set("SET SESSION DateStyle = ISO"));
        assert!(!is_client_set(
            "SET datafusion.execution.target_partitions = 1"
        ));
        assert!(!is_client_set("SELECT 1"));
    }
}
