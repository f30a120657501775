//! A resource as the spec declares it, after parsing: what providers validate and plan from.

use serde::{Deserialize, Serialize};

use crate::address::ResourceAddress;
use crate::value::{Attributes, Value};

/// Whether the spec wants the resource to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ensure {
    #[default]
    Present,
    /// Delete it. For a stateful resource this also needs `allow_destroy = true` and
    /// `--allow-destroy`.
    Absent,
}

/// One `[kind.name]` table of a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceSpec {
    pub address: ResourceAddress,
    /// The kind's own fields, with `${var.*}` and `${env.*}` already substituted; resource
    /// references stay as written (`"vm.nfs"`, `"${public_ip.ingress.address}"`).
    pub fields: Attributes,
    /// Explicit ordering edges (`depends_on = ["hook.staging_hub"]`).
    pub depends_on: Vec<ResourceAddress>,
    /// Half of the two-key opt-in for deleting a stateful resource.
    pub allow_destroy: bool,
    pub ensure: Ensure,
}

impl ResourceSpec {
    pub fn new(address: ResourceAddress) -> Self {
        Self {
            address,
            fields: Attributes::new(),
            depends_on: Vec::new(),
            allow_destroy: false,
            ensure: Ensure::Present,
        }
    }

    pub fn with(mut self, field: &str, value: Value) -> Self {
        self.fields.insert(field.to_owned(), value);
        self
    }

    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }
}
