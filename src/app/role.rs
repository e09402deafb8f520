//! Process roles (ARCHITECTURE.md): which parts of the pipeline this process runs.

use std::fmt;

use crate::config::Settings;
use crate::db::Backend;

/// `all` = `api` + `worker`; `worker` = relay + scheduler + dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    All,
    Api,
    OutboxRelay,
    Scheduler,
    Dispatcher,
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::All => "all",
            Role::Api => "api",
            Role::OutboxRelay => "outbox-relay",
            Role::Scheduler => "scheduler",
            Role::Dispatcher => "dispatcher",
            Role::Worker => "worker",
        })
    }
}

impl Role {
    /// Checks that the role can run with these settings.
    pub fn check(self, settings: &Settings) -> Result<(), String> {
        if self != Role::All {
            let shared_db = Backend::from_url(&settings.database_url).map(|b| b == Backend::Postgres).unwrap_or(false);
            if !shared_db || settings.amqp_url.is_none() {
                return Err(format!(
                    "role `{self}` runs beside other processes and needs a shared database and a broker: \
                     set DATABASE_URL=postgres://… and AMQP_URL=amqp://… (or run --role=all)"
                ));
            }
        }
        Ok(())
    }

    pub fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    pub fn runs_relay(self) -> bool {
        matches!(self, Role::All | Role::Worker | Role::OutboxRelay)
    }

    /// Sends messages: runs the dispatcher (and so may keep the SMPP binds it makes).
    pub fn dispatches(self) -> bool {
        matches!(self, Role::All | Role::Worker | Role::Dispatcher)
    }

    pub fn runs_consumers(self) -> bool {
        matches!(self, Role::All | Role::Worker | Role::Dispatcher | Role::Scheduler)
    }
}
