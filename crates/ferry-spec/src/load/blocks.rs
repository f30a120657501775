//! The blocks that are not resources: `[variables]` (with `--var` overrides), `[deployment]`,
//! `[failover]`, `[state]`, `[limits]` and `[zones."NAME"]`, each with its backend when it has
//! one.

use std::collections::BTreeMap;
use std::path::Path;

use ferry_core::limits::{KIND_PARALLELISM_RANGE, KindLimits};
use ferry_core::provider::FieldSchema;
use ferry_core::value::{self, Expression};
use ferry_core::{Attributes, Kind, Value};
use toml::de::DeValue;

use super::fields::{Allowed, TableRead};
use super::paths::{PathSegment, navigate};
use super::schemas::{
    DEPLOYMENT, FAILOVER, STATE_AZURE_BLOB, STATE_LOCAL, TSIG_ALGORITHMS, WATCH, ZONE_AZURE,
    ZONE_RFC2136,
};
use super::{Entry, Loader, place};
use crate::error::{Place, Problem, SpecError};
use crate::suggest::did_you_mean;
use crate::{Deployment, FailoverMode, FailoverPolicy, LoadOptions, StateConfig, WatchPolicy};

impl Loader<'_> {
    pub(super) fn read_variables(
        &mut self,
        entries: &BTreeMap<String, Entry>,
        options: &LoadOptions,
    ) {
        for (name, entry) in entries {
            let raw = self.json_of(&entry.file, entry.node);
            self.record_secrets(&raw);
            // Variables see the environment only: no order among variables to get wrong.
            let environment = self.environment;
            let value = value::resolve(&raw, &|expression| match expression {
                Expression::Environment(name) => environment.get(name).cloned().map(Value::String),
                _ => None,
            });
            self.check_expressions(
                &entry.file,
                name,
                entry.node,
                &value,
                Allowed::EnvironmentOnly,
                "[variables]",
            );
            self.variables.insert(name.clone(), value);
        }
        for (name, text) in &options.variables {
            let Some(declared) = self.variables.get(name) else {
                let help = did_you_mean(name, self.variables.keys().map(String::as_str))
                    .unwrap_or_else(|| {
                        format!(
                            "declare it in [variables] with a default, such as {name} = \"...\""
                        )
                    });
                self.push(
                    SpecError::new(Problem::UndeclaredVariable { name: name.clone() }, None)
                        .help(help),
                );
                continue;
            };
            // A --var keeps the declared type when the text reads as one.
            let value = match declared {
                Value::Number(_) => text
                    .parse::<i64>()
                    .map_or_else(|_| Value::String(text.clone()), Value::from),
                Value::Bool(_) => text
                    .parse::<bool>()
                    .map_or_else(|_| Value::String(text.clone()), Value::Bool),
                _ => Value::String(text.clone()),
            };
            self.variables.insert(name.clone(), value);
        }
    }

    fn read_block<'d, 'i>(
        &mut self,
        entry: &Entry<'d, 'i>,
        schema: &[FieldSchema],
        within: &str,
    ) -> Option<TableRead<'d, 'i>> {
        let table = self.table_of(entry, within)?;
        Some(self.read_table(
            &entry.file,
            entry.node.span(),
            table,
            schema,
            &[],
            Allowed::VariablesAndEnvironment,
            within,
            true,
        ))
    }

    pub(super) fn read_deployment(&mut self, entry: Option<&Entry>) -> Deployment {
        let Some(entry) = entry else {
            self.push(
                SpecError::new(
                    Problem::MissingBlock {
                        block: "deployment".to_owned(),
                    },
                    None,
                )
                .help("add [deployment] with name = \"...\" and location = \"...\""),
            );
            return Deployment {
                name: String::new(),
                subscription: None,
                location: String::new(),
            };
        };
        let read = self.read_block(entry, DEPLOYMENT, "[deployment]");
        let values = read.map(|read| read.values).unwrap_or_default();
        let text = |key: &str| values.get(key).and_then(Value::as_str).map(str::to_owned);
        Deployment {
            name: text("name").unwrap_or_default(),
            subscription: text("subscription"),
            location: text("location").unwrap_or_default(),
        }
    }

    /// `[failover]`, with the trigger strings' nodes kept to check them once resources are known.
    pub(super) fn read_failover<'d, 'i>(
        &mut self,
        entry: Option<&Entry<'d, 'i>>,
    ) -> (FailoverPolicy, Vec<(String, Place)>) {
        let mut policy = FailoverPolicy {
            mode: FailoverMode::Manual,
            triggers: Vec::new(),
            retire_old: ferry_core::RetireOld::default(),
            standby: crate::Standby::Cold,
        };
        let Some(entry) = entry else {
            return (policy, Vec::new());
        };
        let Some(read) = self.read_block(entry, FAILOVER, "[failover]") else {
            return (policy, Vec::new());
        };
        if let (Some(mode), Some(node)) = (
            read.values.get("mode").and_then(Value::as_str),
            read.node("mode"),
        ) {
            policy.mode = match mode {
                "off" => FailoverMode::Off,
                "manual" => FailoverMode::Manual,
                "automatic" => FailoverMode::Automatic,
                other => {
                    self.push(
                        SpecError::new(
                            Problem::BadChoice {
                                what: "failover mode".to_owned(),
                                value: other.to_owned(),
                            },
                            Some(place(&entry.file, node.span())),
                        )
                        .help("use one of: off, manual, automatic"),
                    );
                    FailoverMode::Manual
                }
            };
        }
        if let (Some(text), Some(node)) = (
            read.values.get("retire_old").and_then(Value::as_str),
            read.node("retire_old"),
        ) {
            match text.parse() {
                Ok(retire_old) => policy.retire_old = retire_old,
                Err(_) => self.push(
                    SpecError::new(
                        Problem::BadChoice {
                            what: "retention of the old generation".to_owned(),
                            value: text.to_owned(),
                        },
                        Some(place(&entry.file, node.span())),
                    )
                    .help(format!("use {}", ferry_core::retention::RETIRE_OLD_CHOICES)),
                ),
            }
        }
        if let (Some(text), Some(node)) = (
            read.values.get("standby").and_then(Value::as_str),
            read.node("standby"),
        ) {
            match text.parse() {
                Ok(standby) => policy.standby = standby,
                Err(()) => self.push(
                    SpecError::new(
                        Problem::BadChoice {
                            what: "standby".to_owned(),
                            value: text.to_owned(),
                        },
                        Some(place(&entry.file, node.span())),
                    )
                    .help(format!(
                        "use {}: warm builds the next generation ahead and keeps it ready, hot also keeps a replica of every pool there",
                        crate::Standby::CHOICES
                    )),
                ),
            }
        }
        let mut triggers = Vec::new();
        if let (Some(items), Some(node)) = (
            read.values.get("triggers").and_then(Value::as_array),
            read.node("triggers"),
        ) {
            for (index, item) in items.iter().enumerate() {
                if let Some(text) = item.as_str() {
                    let at = navigate(node, &[PathSegment::Index(index)]);
                    triggers.push((text.to_owned(), place(&entry.file, at.span())));
                }
            }
        }
        (policy, triggers)
    }

    /// `[watch]`; a quorum above 1 needs a state the watchers share.
    pub(super) fn read_watch(&mut self, entry: Option<&Entry>, state: &StateConfig) -> WatchPolicy {
        let mut policy = WatchPolicy::default();
        let Some(entry) = entry else {
            return policy;
        };
        let Some(read) = self.read_block(entry, WATCH, "[watch]") else {
            return policy;
        };
        if let (Some(quorum), Some(node)) = (
            read.values.get("quorum").and_then(Value::as_i64),
            read.node("quorum"),
        ) {
            // The schema's range has refused anything outside it, once.
            let Some(quorum) = u32::try_from(quorum)
                .ok()
                .filter(|quorum| (1..=9).contains(quorum))
            else {
                return policy;
            };
            policy.quorum = quorum;
            if quorum > 1 && matches!(state, StateConfig::Local { .. }) {
                self.push(
                    SpecError::new(
                        Problem::Invalid {
                            address: "[watch] quorum".to_owned(),
                            message: format!(
                                "a quorum of {quorum} watchers needs a state they share, and this one is local"
                            ),
                        },
                        Some(place(&entry.file, node.span())),
                    )
                    .help("set backend = \"azure_blob\" in [state], or remove quorum"),
                );
            }
        }
        policy
    }

    pub(super) fn read_state(&mut self, entry: Option<&Entry>, root: &Path) -> StateConfig {
        let local = |path: &str| StateConfig::Local {
            path: root.join(path),
        };
        let Some(entry) = entry else {
            return local(".ferry");
        };
        let Some(backend) = self.backend(entry, "[state]", &["local", "azure_blob"], "local")
        else {
            return local(".ferry");
        };
        let schema = if backend == "azure_blob" {
            STATE_AZURE_BLOB
        } else {
            STATE_LOCAL
        };
        let Some(read) = self.read_block(entry, schema, "[state]") else {
            return local(".ferry");
        };
        let text = |key: &str| {
            read.values
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        if backend == "azure_blob" {
            let optional = |key: &str| {
                read.values
                    .get(key)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            StateConfig::AzureBlob {
                account: text("account"),
                container: text("container"),
                blob: text("blob"),
                endpoint: optional("endpoint"),
                sas_url_env: optional("sas_url_env"),
                ca_file: optional("ca_file").map(|path| root.join(path)),
            }
        } else {
            local(
                read.values
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or(".ferry"),
            )
        }
    }

    /// `[limits]`: a key per kind whose limit the spec sets. A key that names no kind is
    /// reported as an unknown kind, with the closest kind when one is close.
    pub(super) fn read_limits(&mut self, entry: Option<&Entry>) -> KindLimits {
        let mut limits = KindLimits::new();
        let Some(entry) = entry else {
            return limits;
        };
        let Some(table) = self.table_of(entry, "[limits]") else {
            return limits;
        };
        let kind_names: Vec<&str> = Kind::ALL.into_iter().map(Kind::as_str).collect();
        let mut not_kinds = Vec::new();
        for key in table.keys() {
            let name: &str = key.get_ref();
            if name.parse::<Kind>().is_ok() {
                continue;
            }
            let help = did_you_mean(name, kind_names.iter().copied()).unwrap_or_else(|| {
                format!(
                    "[limits] takes the resource kinds: {}",
                    kind_names.join(", ")
                )
            });
            self.push(
                SpecError::new(
                    Problem::UnknownKind {
                        name: name.to_owned(),
                    },
                    Some(place(&entry.file, key.span())),
                )
                .help(help),
            );
            not_kinds.push(name);
        }
        let schema = super::schemas::limits();
        let read = self.read_table(
            &entry.file,
            entry.node.span(),
            table,
            &schema,
            &not_kinds,
            Allowed::VariablesAndEnvironment,
            "[limits]",
            true,
        );
        for (name, value) in &read.values {
            let (Ok(kind), Some(limit)) = (name.parse::<Kind>(), value.as_i64()) else {
                continue;
            };
            // Out of range was reported by the schema's check: leave the provider's limit.
            if KIND_PARALLELISM_RANGE.contains(limit)
                && let Ok(limit) = usize::try_from(limit)
            {
                limits.insert(kind, limit);
            }
        }
        limits
    }

    /// The `backend` of a block, checked against the choices; `None` when it is not usable.
    fn backend(
        &mut self,
        entry: &Entry,
        within: &str,
        choices: &[&str],
        default: &str,
    ) -> Option<String> {
        let DeValue::Table(table) = entry.node.get_ref() else {
            return Some(default.to_owned());
        };
        let Some(node) = table.get("backend") else {
            return Some(default.to_owned());
        };
        let Some(backend) = node.get_ref().as_str() else {
            return Some(default.to_owned());
        };
        if choices.contains(&backend) {
            return Some(backend.to_owned());
        }
        let help = did_you_mean(backend, choices.iter().copied())
            .unwrap_or_else(|| format!("use one of: {}", choices.join(", ")));
        self.push(
            SpecError::new(
                Problem::BadChoice {
                    what: format!("backend for {within}"),
                    value: backend.to_owned(),
                },
                Some(place(&entry.file, node.span())),
            )
            .help(help),
        );
        None
    }

    pub(super) fn read_zones(
        &mut self,
        entries: &BTreeMap<String, Entry>,
    ) -> BTreeMap<String, Attributes> {
        let mut zones = BTreeMap::new();
        for (name, entry) in entries {
            let within = format!("[zones.\"{name}\"]");
            let has_backend = matches!(entry.node.get_ref(), DeValue::Table(table) if table.contains_key("backend"));
            let (schema, is_rfc2136) = match self.backend(entry, &within, &["azure", "rfc2136"], "")
            {
                Some(backend) if backend == "azure" => (ZONE_AZURE, false),
                Some(backend) if backend == "rfc2136" => (ZONE_RFC2136, true),
                // Without a backend the other keys have no schema to be checked against.
                Some(_) if !has_backend => {
                    self.push(
                        SpecError::new(
                            Problem::MissingField {
                                within: within.clone(),
                                field: "backend".to_owned(),
                            },
                            Some(place(&entry.file, entry.node.span())),
                        )
                        .help("add backend = \"azure\" (Azure DNS) or backend = \"rfc2136\" (a DNS server with dynamic updates)"),
                    );
                    continue;
                }
                _ => continue,
            };
            let Some(read) = self.read_block(entry, schema, &within) else {
                continue;
            };
            if is_rfc2136 {
                let secrets = ["tsig_secret_env", "tsig_secret_file"]
                    .iter()
                    .filter(|key| read.values.contains_key(**key))
                    .count();
                if secrets != 1 {
                    self.push(
                        SpecError::new(
                            Problem::Invalid {
                                address: within.clone(),
                                message: "an rfc2136 zone needs exactly one of tsig_secret_env and tsig_secret_file".to_owned(),
                            },
                            Some(place(&entry.file, entry.key.clone())),
                        )
                        .help("name where the TSIG secret is: tsig_secret_env = \"VARIABLE\" or tsig_secret_file = \"path\""),
                    );
                }
                if let (Some(algorithm), Some(node)) = (
                    read.values.get("tsig_algorithm").and_then(Value::as_str),
                    read.node("tsig_algorithm"),
                ) && !TSIG_ALGORITHMS.contains(&algorithm)
                {
                    self.push(
                        SpecError::new(
                            Problem::BadChoice {
                                what: "TSIG algorithm".to_owned(),
                                value: algorithm.to_owned(),
                            },
                            Some(place(&entry.file, node.span())),
                        )
                        .help(format!("use one of: {}", TSIG_ALGORITHMS.join(", "))),
                    );
                }
            }
            zones.insert(name.clone(), read.values);
        }
        zones
    }
}
