//! A write transaction sent to the database as one list of statements.
//!
//! On SQLite every statement of a transaction is a hand-off to the connection's own thread (sqlx runs
//! each connection on a thread of its own) and back, and the one writer stays held across each: on a
//! busy machine a hand-off waits for both threads to be scheduled. Measured in the HTTP → SMPP
//! scenario (BENCHMARKS.md, twenty-second session): the writer was held 97–99 % of the time, and
//! about half of it between statements — an accept batch held it 2.8 ms for 1.2 ms of work. A
//! [`Script`] goes over as ONE statement list (`BEGIN IMMEDIATE; …; COMMIT`), which the connection's
//! thread runs from its first statement to its last without letting go: the writer is held only while
//! SQLite works. If a statement fails (or the caller goes away), the driver rolls the transaction back
//! before the connection is used again (`vendor/sqlx-sqlite`, the worker's statement-list rule), so
//! a failed script leaves nothing written, as a failed transaction would.
//!
//! PostgreSQL runs the same statements one by one in a transaction, as before.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement, Value};

/// The statements of one write transaction, in order.
pub struct Script {
    backend: DbBackend,
    parts: Vec<(Statement, bool)>,
}

impl Script {
    pub fn new(backend: DbBackend) -> Self {
        Script { backend, parts: Vec::new() }
    }

    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    /// A statement that returns no rows (on PostgreSQL, any rows it returns are dropped).
    pub fn push(&mut self, statement: Statement) {
        self.parts.push((statement, false));
    }

    /// Statements that return no rows.
    pub fn extend(&mut self, statements: impl IntoIterator<Item = Statement>) {
        self.parts.extend(statements.into_iter().map(|s| (s, false)));
    }

    /// A statement whose rows [`Script::run`] returns (an `… RETURNING`).
    pub fn push_returning(&mut self, statement: Statement) {
        self.parts.push((statement, true));
    }

    /// Runs every statement in one write transaction and commits; returns the rows of the statements
    /// pushed with [`Script::push_returning`], in order.
    pub async fn run(self, db: &DatabaseConnection) -> Result<Vec<QueryResult>, DbErr> {
        if self.backend != DbBackend::Sqlite {
            let txn = super::begin_write(db).await?;
            let mut rows = Vec::new();
            for (statement, returning) in self.parts {
                if returning {
                    rows.extend(txn.query_all_raw(statement).await?);
                } else {
                    txn.execute_raw(statement).await?;
                }
            }
            txn.commit().await?;
            return Ok(rows);
        }
        let mut sql = String::from("BEGIN IMMEDIATE;\n");
        let mut values: Vec<Value> = Vec::new();
        for (statement, _) in self.parts {
            sql.push_str(&statement.sql);
            sql.push_str(";\n");
            values.extend(statement.values.map(|v| v.0).unwrap_or_default());
        }
        sql.push_str("COMMIT;");
        let started = std::time::Instant::now();
        // `query_all`, never a one-row fetch: the driver stops a statement list at a fetch's first row.
        let rows = db.query_all_raw(Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)).await?;
        metrics::histogram!("db_write_script_seconds").record(started.elapsed().as_secs_f64());
        Ok(rows)
    }
}
