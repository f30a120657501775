//! Planning rules of hooks (commands ferry runs, such as `helm upgrade --install`) and checks
//! (conditions ferry waits for, such as "this host serves a valid TLS certificate"), and
//! their providers: [`HookProvider`] runs commands, [`CheckProvider`] polls conditions.

pub mod check;
pub mod mask;
pub mod run;

pub use check::CheckProvider;
pub use run::HookProvider;

use ferry_core::fields::hook;
use ferry_core::provider::{FieldType as T, IntegerRange, OnChange};
use ferry_core::{
    Action, FieldError, FieldSchema as F, Kind, KindRules, OutputSchema as O, ResourceSpec, Value,
};

const ESTIMATE: F = F::optional(
    "estimate_seconds",
    T::Integer(IntegerRange::seconds(0)),
    Some("120"),
    OnChange::InPlace,
    "how long it usually takes, for the plan's time to recovery",
);

fn estimate(spec: &ResourceSpec) -> u64 {
    spec.field("estimate_seconds")
        .and_then(Value::as_u64)
        .unwrap_or(120)
}

/// `[hook.NAME]`
#[derive(Debug, Clone, Copy, Default)]
pub struct HookRules;

impl KindRules for HookRules {
    fn simulate(
        &self,
        _step: &ferry_core::SimulatedStep<'_>,
        attributes: &mut ferry_core::Attributes,
    ) {
        attributes.insert("exit_code".to_owned(), ferry_core::Value::from(0));
    }

    fn kind(&self) -> Kind {
        Kind::Hook
    }

    fn description(&self) -> &'static str {
        "A command run with other resources' outputs in its environment; run again when they change"
    }

    fn fields(&self) -> &'static [F] {
        const FIELDS: &[F] = &[
            F::optional(
                "command",
                T::StringList,
                None,
                OnChange::InPlace,
                "the program and its arguments, run without a shell",
            ),
            F::optional(
                "shell",
                T::String,
                None,
                OnChange::InPlace,
                "a script run with sh -c, instead of command",
            ),
            F::optional(
                "env",
                T::StringMap,
                None,
                OnChange::InPlace,
                "environment variables; values may reference outputs, such as ${aks_cluster.hub.kubeconfig}",
            ),
            F::optional(
                "pass_env",
                T::StringList,
                None,
                OnChange::InPlace,
                "names of ferry's environment variables the hook also gets (it gets only PATH, HOME, LANG, LC_ALL, LC_CTYPE, TMPDIR, TZ, env and these); never AZURE_*, ARM_*, MSI_*, IDENTITY_* or FERRY_*",
            ),
            F::optional(
                "working_dir",
                T::String,
                Some("the spec's folder"),
                OnChange::InPlace,
                "folder to run in, relative to the spec's folder",
            ),
            F::optional(
                "timeout_seconds",
                T::Integer(IntegerRange::seconds(1)),
                Some("900"),
                OnChange::InPlace,
                "the whole process group is killed after this long",
            ),
            F::optional(
                "retry",
                T::Boolean,
                Some("false"),
                OnChange::InPlace,
                "whether ferry may run it again after a failure; only for idempotent commands",
            ),
            F::optional(
                "standby",
                T::Boolean,
                Some("false"),
                OnChange::InPlace,
                "with [failover] standby = \"warm\": also run it in the standby generation, ahead of a failover (a hub deployed idle); it may need only what the standby builds, never the data",
            ),
            F::optional(
                hook::OUTPUTS,
                T::StringList,
                None,
                OnChange::InPlace,
                "output names read from the JSON object the command writes to the file named by $FERRY_OUTPUTS, or prints on its last line",
            ),
            ESTIMATE,
        ];
        FIELDS
    }

    fn outputs(&self) -> &'static [O] {
        &[O {
            name: "exit_code",
            description: "the command's exit code; plus every name listed in outputs",
        }]
    }

    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        let mut errors = Vec::new();
        match (spec.field("command"), spec.field("shell")) {
            (None, None) => errors.push(
                FieldError::new("", "a hook needs a command or a shell script")
                    .with_help("add command = [\"helm\", \"upgrade\", \"--install\", ...]"),
            ),
            (Some(_), Some(_)) => errors.push(
                FieldError::new("shell", "a hook has either command or shell, not both")
                    .with_help("keep command, which runs without a shell"),
            ),
            (Some(command), None) if command.as_array().is_some_and(Vec::is_empty) => errors.push(
                FieldError::new("command", "the command is empty")
                    .with_help("put the program first, then its arguments"),
            ),
            _ => {}
        }
        for (index, name) in spec
            .field("pass_env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(name) = name.as_str() else { continue };
            if run::is_ferrys_own_variable(name) {
                errors.push(
                    FieldError::new(
                        format!("pass_env[{index}]"),
                        format!("{name} is one of ferry's own credentials or settings, which never reach a hook"),
                    )
                    .with_help("give the hook its own credential through env, such as env = { TOKEN = \"${env.HOOK_TOKEN}\" }"),
                );
            } else if name.is_empty() || name.contains('=') || name.contains('\0') {
                errors.push(
                    FieldError::new(
                        format!("pass_env[{index}]"),
                        format!("`{name}` is not an environment variable's name"),
                    )
                    .with_help("list names only, such as pass_env = [\"HTTPS_PROXY\"]"),
                );
            }
        }
        if spec.field("timeout_seconds").and_then(Value::as_i64) == Some(0) {
            errors.push(FieldError::new(
                "timeout_seconds",
                "a timeout of 0 would kill the hook at once",
            ));
        }
        errors
    }

    fn estimate_seconds(&self, action: Action, spec: &ResourceSpec) -> u64 {
        match action {
            Action::Run => estimate(spec),
            // Retiring or deleting a hook only forgets its last run.
            _ => 0,
        }
    }

    fn is_observed(&self, field: &str) -> bool {
        !matches!(
            field,
            "retry" | "estimate_seconds" | "timeout_seconds" | "standby"
        )
    }
}

/// `[check.NAME]`
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckRules;

/// The kinds of checks, each with its own fields.
pub const CHECK_TYPES: &[&str] = &["http", "tls", "dns"];

impl KindRules for CheckRules {
    fn kind(&self) -> Kind {
        Kind::Check
    }

    fn description(&self) -> &'static str {
        "A condition ferry waits for: an HTTP status, a valid TLS certificate, a DNS answer"
    }

    fn fields(&self) -> &'static [F] {
        const FIELDS: &[F] = &[
            F::required("type", T::String, OnChange::InPlace, "http, tls or dns"),
            F::optional(
                "url",
                T::String,
                None,
                OnChange::InPlace,
                "http: the URL to GET",
            ),
            F::optional(
                "expect_status",
                T::Integer(IntegerRange::new(100, 599)),
                Some("200"),
                OnChange::InPlace,
                "http: the status that passes",
            ),
            F::optional(
                "host",
                T::String,
                None,
                OnChange::InPlace,
                "tls: the host name the certificate must match; dns: the name to resolve",
            ),
            F::optional(
                "port",
                T::Integer(IntegerRange::PORT),
                Some("443"),
                OnChange::InPlace,
                "tls: the port",
            ),
            F::optional(
                "connect_to",
                T::String,
                None,
                OnChange::InPlace,
                "tls: the address to connect to instead of resolving host (a new ingress before resolvers see its DNS record); the certificate must still match host",
            ),
            F::optional(
                "ca_file",
                T::String,
                Some("the system roots"),
                OnChange::InPlace,
                "http and tls: CA certificates that the chain must lead to",
            ),
            F::optional(
                "min_days_valid",
                T::Integer(IntegerRange::new(0, 3650)),
                Some("7"),
                OnChange::InPlace,
                "tls: the certificate must stay valid at least this many days",
            ),
            F::optional(
                "server",
                T::String,
                None,
                OnChange::InPlace,
                "dns: the server to ask (address:port), such as the zone's primary",
            ),
            F::optional(
                "record_type",
                T::String,
                Some("A"),
                OnChange::InPlace,
                "dns: the record type to ask for",
            ),
            F::optional(
                "expect",
                T::StringList,
                None,
                OnChange::InPlace,
                "dns: the values that pass",
            ),
            F::optional(
                "timeout_seconds",
                T::Integer(IntegerRange::seconds(1)),
                Some("900"),
                OnChange::InPlace,
                "how long to wait before the check fails",
            ),
            F::optional(
                "interval_seconds",
                T::Integer(IntegerRange::seconds(1)),
                Some("10"),
                OnChange::InPlace,
                "time between two polls",
            ),
            ESTIMATE,
        ];
        FIELDS
    }

    fn outputs(&self) -> &'static [O] {
        &[]
    }

    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let check_type = spec.str_field("type").unwrap_or_default();
        let needs: &[&str] = match check_type {
            "http" => &["url"],
            "tls" => &["host"],
            "dns" => &["host", "server", "expect"],
            other => {
                errors.push(
                    FieldError::new("type", format!("`{other}` is not a check type"))
                        .with_help(format!("use one of: {}", CHECK_TYPES.join(", "))),
                );
                &[]
            }
        };
        for field in needs {
            if spec.field(field).is_none() {
                errors.push(
                    FieldError::new("", format!("a {check_type} check needs `{field}`"))
                        .with_help(format!("add {field} = ...")),
                );
            }
        }
        if let Some(url) = spec.str_field("url")
            && !url.contains("${")
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            errors.push(
                FieldError::new("url", format!("`{url}` is not an http or https URL"))
                    .with_help("start it with https://"),
            );
        }
        errors
    }

    fn estimate_seconds(&self, _: Action, spec: &ResourceSpec) -> u64 {
        estimate(spec)
    }

    fn is_observed(&self, _: &str) -> bool {
        false
    }
}
