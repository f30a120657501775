//! How a resource's spec fields become the attributes of one of its instances: references
//! become instance addresses, `${generation}` a number, and `${kind.name.output}` a value when
//! the output is known, or an expression pinned to the right generation when it is not.
//!
//! The planner uses this with the observations it plans from; `ferry observe` uses it with the
//! outputs that ferry's state remembers, so that both read the same names.

use crate::Spec;
use ferry_core::provider::FieldType;
use ferry_core::value::{self, Expression};
use ferry_core::{Attributes, Generation, InstanceAddress, KindRules, ResourceAddress, Value};
use serde_json::json;

/// The instance of `address` at `generation`: replaceable kinds have one per generation, the
/// others a single one.
pub fn instance_at(address: &ResourceAddress, generation: Generation) -> InstanceAddress {
    address.at(address.kind.is_replaceable().then_some(generation))
}

/// The attributes an instance of `address` should have at `generation`.
///
/// `output` answers `${instance.output}` when the value is known; unknown outputs stay as
/// expressions pinned to their instance (`${public_ip.ingress@g2.address}`) for the apply
/// engine to finish.
pub fn resolve_fields(
    spec: &Spec,
    rules: &dyn KindRules,
    address: &ResourceAddress,
    generation: Generation,
    output: &dyn Fn(&InstanceAddress, &str) -> Option<Value>,
) -> Attributes {
    let Some(resource) = spec.resources.get(address) else {
        return Attributes::new();
    };
    let mut fields = resource.fields.clone();
    if rules.fields().iter().any(|field| field.name == "location")
        && !fields.contains_key("location")
    {
        fields.insert(
            "location".to_owned(),
            json!(spec.deployment.location.clone()),
        );
    }
    let reference = |text: &str| match text.parse::<ResourceAddress>() {
        Ok(address) => json!(instance_at(&address, generation).to_string()),
        Err(_) => json!(text),
    };
    for (name, field_value) in fields.iter_mut() {
        let field_type = rules
            .fields()
            .iter()
            .find(|field| field.name == name)
            .map(|field| field.field_type);
        match (field_type, &*field_value) {
            (Some(FieldType::Reference(_)), Value::String(text)) => {
                *field_value = reference(text);
            }
            (Some(FieldType::ReferenceList(_)), Value::Array(items)) => {
                *field_value = Value::Array(
                    items
                        .iter()
                        .map(|item| item.as_str().map_or_else(|| item.clone(), reference))
                        .collect(),
                );
            }
            _ => {}
        }
        // A field without `${` (most of them) is already what the instance gets.
        if !value::has_expression(field_value) {
            continue;
        }
        let pinned = value::rewrite(field_value, &|expression| match expression {
            Expression::Output {
                address,
                generation: None,
                output,
            } => Some(Expression::Output {
                address: address.clone(),
                generation: instance_at(address, generation).generation,
                output: output.clone(),
            }),
            _ => None,
        });
        *field_value = value::resolve(&pinned, &|expression| match expression {
            Expression::Generation => Some(json!(generation)),
            Expression::Output {
                address,
                generation,
                output: name,
            } => output(&address.at(*generation), name),
            _ => None,
        });
    }
    fields
}
