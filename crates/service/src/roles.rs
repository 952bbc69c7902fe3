//! Roles, as Grafana Mimir and Loki have them: one binary, modules with declared dependencies, and a
//! `--target` that names which modules a process runs. `all` is what a laptop runs; a cluster runs
//! many `api` processes behind a balancer and one or more `worker` processes beside them.

/// One part of the application a process may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    /// The database, bootstrap and the collection/settings snapshots.
    Store,
    /// The event bus tail (feeds realtime and the record cache's invalidation).
    EventTail,
    /// Node registry, heartbeats and cross-node messages (when serving).
    Membership,
    /// The public HTTP API: records, collections, auth, files, batch, backups endpoints.
    Api,
    /// The realtime hub and its fan-out from the tail.
    Realtime,
    /// Durable sinks (webhooks sink, Kafka, NATS, RabbitMQ), each under a cluster-wide lease.
    Sinks,
    /// Webhook deliveries (claimed one by one, so several workers never send the same attempt).
    WebhookWorker,
    /// Pruning of events every consumer acknowledged.
    Pruner,
    /// Scheduled backups (`backups.cron`).
    BackupScheduler,
    /// `/livez` and `/readyz`.
    Probes,
}

impl Module {
    pub fn name(self) -> &'static str {
        match self {
            Module::Store => "store",
            Module::EventTail => "event-tail",
            Module::Membership => "membership",
            Module::Api => "api",
            Module::Realtime => "realtime",
            Module::Sinks => "sinks",
            Module::WebhookWorker => "webhook-worker",
            Module::Pruner => "pruner",
            Module::BackupScheduler => "backup-scheduler",
            Module::Probes => "probes",
        }
    }

    /// What this module needs running in the same process.
    pub fn depends_on(self) -> &'static [Module] {
        match self {
            Module::Store | Module::Probes => &[],
            Module::EventTail | Module::Membership | Module::BackupScheduler => &[Module::Store],
            Module::Realtime => &[Module::EventTail],
            Module::Api => &[Module::Store, Module::Realtime, Module::Membership],
            Module::Sinks | Module::Pruner => &[Module::EventTail, Module::Membership],
            Module::WebhookWorker => &[Module::Store],
        }
    }
}

/// A named set of modules.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    pub modules: &'static [Module],
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "all",
        about: "everything in one process (the default; what a laptop runs)",
        modules: &[
            Module::Store,
            Module::EventTail,
            Module::Membership,
            Module::Api,
            Module::Realtime,
            Module::Sinks,
            Module::WebhookWorker,
            Module::Pruner,
            Module::BackupScheduler,
            Module::Probes,
        ],
    },
    Target {
        name: "api",
        about: "serves the public API and realtime; delivers no events (run a worker beside it)",
        modules: &[
            Module::Store,
            Module::EventTail,
            Module::Membership,
            Module::Api,
            Module::Realtime,
            Module::Probes,
        ],
    },
    Target {
        name: "worker",
        about: "delivers events to sinks and webhooks, prunes the outbox, runs scheduled backups; no public API",
        modules: &[
            Module::Store,
            Module::EventTail,
            Module::Membership,
            Module::Sinks,
            Module::WebhookWorker,
            Module::Pruner,
            Module::BackupScheduler,
            Module::Probes,
        ],
    },
];

impl Target {
    pub fn find(name: &str) -> Option<&'static Target> {
        TARGETS.iter().find(|t| t.name == name)
    }

    pub fn all() -> &'static Target {
        &TARGETS[0]
    }

    pub fn runs(&self, m: Module) -> bool {
        self.modules.contains(&m)
    }

    /// The `--list-targets` table: each target, its modules, and each module's dependencies.
    pub fn table() -> String {
        let mut out = String::new();
        for t in TARGETS {
            out.push_str(&format!("{:8} {}\n", t.name, t.about));
            let names: Vec<&str> = t.modules.iter().map(|m| m.name()).collect();
            out.push_str(&format!("         modules: {}\n", names.join(", ")));
        }
        out.push_str("\nmodule dependencies:\n");
        let all = Target::all();
        for m in all.modules {
            let deps: Vec<&str> = m.depends_on().iter().map(|d| d.name()).collect();
            out.push_str(&format!(
                "  {:16} {}\n",
                m.name(),
                if deps.is_empty() {
                    "-".to_string()
                } else {
                    deps.join(", ")
                }
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_holds_its_modules_dependencies() {
        for t in TARGETS {
            for m in t.modules {
                for d in m.depends_on() {
                    assert!(
                        t.runs(*d),
                        "target {} runs {} without {}",
                        t.name,
                        m.name(),
                        d.name()
                    );
                }
            }
        }
        assert!(Target::find("api").is_some_and(|t| !t.runs(Module::Sinks)));
        assert!(Target::find("worker").is_some_and(|t| !t.runs(Module::Api)));
        assert!(Target::find("gateway").is_none());
    }
}
