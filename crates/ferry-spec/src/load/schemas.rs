//! The schemas of the blocks that are not resources (`[deployment]`, `[failover]`, `[state]`,
//! `[limits]`, `[watch]`, `[zones."NAME"]`), and the names the loader treats apart from kinds.

use ferry_core::Kind;
use ferry_core::limits::KIND_PARALLELISM_RANGE;
use ferry_core::provider::{FieldSchema, FieldType, OnChange};

/// The top-level tables that are not resource kinds.
pub(super) const BLOCKS: [&str; 7] = [
    "deployment",
    "failover",
    "state",
    "limits",
    "variables",
    "watch",
    "zones",
];

/// Keys every resource table may hold besides its kind's fields.
pub(super) const META_KEYS: [&str; 3] = ["depends_on", "allow_destroy", "ensure"];

const fn text(
    name: &'static str,
    required: bool,
    default: Option<&'static str>,
    description: &'static str,
) -> FieldSchema {
    FieldSchema {
        name,
        field_type: FieldType::String,
        required,
        default,
        description,
        on_change: OnChange::InPlace,
    }
}

pub(super) const DEPLOYMENT: &[FieldSchema] = &[
    text("name", true, None, "the deployment's name"),
    text("subscription", false, None, "the Azure subscription id"),
    text(
        "location",
        true,
        None,
        "the Azure region of every resource, such as westeurope",
    ),
];

pub(super) const FAILOVER: &[FieldSchema] = &[
    text("mode", false, Some("manual"), "off, manual or automatic"),
    FieldSchema {
        name: "triggers",
        field_type: FieldType::StringList,
        required: false,
        default: None,
        description: "replaceable resources whose bad health starts a failover",
        on_change: OnChange::InPlace,
    },
    text(
        "retire_old",
        false,
        Some("now"),
        "when the generation a failover leaves is retired: now (in the failover's apply), when-asked (by `ferry apply --retire-old now`), or a duration such as 24h (by the first apply that long after the failover)",
    ),
    text(
        "standby",
        false,
        Some("cold"),
        "cold (a failover builds the next generation) or warm (every apply keeps the next generation's resources that need no data built and ready, and hooks marked standby = true run there: a failover moves the data and runs only what needs it)",
    ),
];

pub(super) const WATCH: &[FieldSchema] = &[FieldSchema {
    name: "quorum",
    field_type: FieldType::Integer(ferry_core::provider::IntegerRange::new(1, 9)),
    required: false,
    default: Some("1"),
    description: "how many `ferry watch` processes must each have seen a trigger unhealthy for their hold time before the leader fails over automatically (or marks its alert confirmed); above 1 it needs a shared [state]",
    on_change: OnChange::InPlace,
}];

/// `[limits]`: one optional integer per kind, the steps of that kind an apply runs at once.
pub(super) fn limits() -> Vec<FieldSchema> {
    Kind::ALL
        .into_iter()
        .map(|kind| FieldSchema {
            name: kind.as_str(),
            field_type: FieldType::Integer(KIND_PARALLELISM_RANGE),
            required: false,
            default: None,
            description: "the steps of this kind an apply runs at once, in place of its provider's own limit (--kind-parallelism overrides it)",
            on_change: OnChange::InPlace,
        })
        .collect()
}

pub(super) const STATE_LOCAL: &[FieldSchema] = &[
    text("backend", false, Some("local"), "local or azure_blob"),
    text(
        "path",
        false,
        Some(".ferry"),
        "the state folder, relative to the spec's folder",
    ),
];

pub(super) const STATE_AZURE_BLOB: &[FieldSchema] = &[
    text("backend", false, Some("local"), "local or azure_blob"),
    text("account", true, None, "the storage account"),
    text("container", true, None, "the blob container"),
    text("blob", true, None, "the blob that holds the state"),
    text(
        "endpoint",
        false,
        None,
        "the container's account endpoint, for Azurite or a sovereign cloud (default https://ACCOUNT.blob.core.windows.net)",
    ),
    text(
        "sas_url_env",
        false,
        None,
        "an environment variable holding a container SAS URL, used instead of an Entra ID token",
    ),
    text(
        "ca_file",
        false,
        None,
        "a PEM file of extra CA certificates to trust, relative to the spec's folder",
    ),
];

pub(super) const ZONE_AZURE: &[FieldSchema] = &[
    text("backend", true, None, "azure or rfc2136"),
    text(
        "resource_group",
        true,
        None,
        "the resource group of the Azure DNS zone",
    ),
    text(
        "subscription",
        false,
        None,
        "the subscription of the zone, when it is not the deployment's",
    ),
];

pub(super) const ZONE_RFC2136: &[FieldSchema] = &[
    text("backend", true, None, "azure or rfc2136"),
    text(
        "server",
        true,
        None,
        "the primary server as address:port, such as 127.0.0.1:53",
    ),
    text("tsig_key_name", true, None, "the name of the TSIG key"),
    text(
        "tsig_algorithm",
        false,
        Some("hmac-sha256"),
        "the TSIG algorithm, such as hmac-sha256",
    ),
    text(
        "tsig_secret_env",
        false,
        None,
        "the environment variable that holds the TSIG secret",
    ),
    text(
        "tsig_secret_file",
        false,
        None,
        "the file that holds the TSIG secret",
    ),
];

pub(super) const TSIG_ALGORITHMS: &[&str] = &[
    "hmac-md5",
    "hmac-sha1",
    "hmac-sha224",
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
];
