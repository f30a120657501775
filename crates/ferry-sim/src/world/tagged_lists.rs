//! A subscription's lists across its groups, `Resources - List` (`GET
//! /subscriptions/{id}/resources`) and `Resource Groups - List` (`GET
//! /subscriptions/{id}/resourcegroups`), with the `$filter` forms ARM takes for them: what a
//! drill's clean-up asks to prove that nothing tagged with the drill is left anywhere.
//!
//! The forms and refusals follow Microsoft.Resources 2025-04-01's `resources.json` and what
//! ARM answers in the field:
//! - `tagName eq 'k'`, and `tagName eq 'k' and tagValue eq 'v'`: the resources (or groups)
//!   carrying that tag. A tag's name is compared ignoring case, as ARM keeps tag names; its
//!   value exactly. Resources filtered by a tag name and value come back without their tags
//!   ("the original tags for each resource will not be returned in the results").
//! - `resourceType eq 'Namespace/type'` on the resources' list.
//! - A tag filter combined with any other (a type, a group, a name) is refused `400
//!   InvalidFilterInQueryString` with "Invalid $filter '...' specified in the query string."
//!   (Azure/azure-rest-api-specs#21324, Azure/azure-cli#7674, Azure/azure-powershell#293), as
//!   is a `tagValue` without its `tagName`, and anything that does not parse. A group list
//!   takes tag filters only.
//!
//! The simulator serves no other form (`substringof`, `startswith`, `ne`, `or`, `location`,
//! `name`, ...): it refuses them with the same code, saying so, rather than answering a list
//! the filter did not ask for.
//!
//! A subscription's resource list holds top-level resources only (a subnet or a record set is
//! part of its parent, not an item), never the groups themselves, and each item is a
//! `GenericResourceExpanded`: who the resource is, not its `properties`.

use serde_json::{Map, Value, json};

use super::ids::{Kind, kind_of, name_of, subscription_of, type_of};
use super::{Refusal, SimRequest, SimResponse, Stored, World};

/// What a `$filter` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Everything,
    /// `tagName eq 'name'`, with `and tagValue eq 'value'` when `value` is given.
    Tag {
        name: String,
        value: Option<String>,
    },
    /// `resourceType eq 'Microsoft.Compute/disks'`.
    ResourceType(String),
}

/// Which list is asked: the filters each takes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListOf {
    Resources,
    Groups,
}

/// The top-level fields of a resource as `Resources - List` shows it (`GenericResource`).
const GENERIC_FIELDS: &[&str] = &[
    "id",
    "name",
    "type",
    "location",
    "kind",
    "managedBy",
    "sku",
    "plan",
    "identity",
    "extendedLocation",
    "tags",
];

impl World {
    /// `GET /subscriptions/{id}/resources`.
    pub(super) fn list_resources_in_subscription(
        &self,
        request: &SimRequest,
        subscription: &str,
    ) -> Result<SimResponse, Refusal> {
        let filter = parse_filter(request.query_value("$filter"), ListOf::Resources)?;
        let items: Vec<&Stored> = self
            .resources
            .values()
            .filter(|stored| {
                subscription_of(&stored.id).eq_ignore_ascii_case(subscription)
                    && kind_of(&stored.id) != Kind::Group
                    && is_top_level(&stored.id)
                    && filter.matches(stored)
            })
            .collect();
        let without_tags = matches!(filter, Filter::Tag { value: Some(_), .. });
        Ok(self.page(request, items, |stored| {
            generic_resource(stored, without_tags)
        }))
    }

    /// `GET /subscriptions/{id}/resourcegroups`.
    pub(super) fn list_groups_in_subscription(
        &self,
        request: &SimRequest,
        subscription: &str,
    ) -> Result<SimResponse, Refusal> {
        let filter = parse_filter(request.query_value("$filter"), ListOf::Groups)?;
        let mut items = self.items_of(&format!("/subscriptions/{subscription}/resourceGroups"));
        items.retain(|stored| filter.matches(stored));
        Ok(self.page(request, items, |stored| self.response_body(stored)))
    }
}

impl Filter {
    fn matches(&self, stored: &Stored) -> bool {
        match self {
            Filter::Everything => true,
            Filter::ResourceType(wanted) => type_of(&stored.id).eq_ignore_ascii_case(wanted),
            Filter::Tag { name, value } => stored
                .body
                .get("tags")
                .and_then(Value::as_object)
                .and_then(|tags| {
                    tags.iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(name))
                        .map(|(_, found)| found)
                })
                .is_some_and(|found| {
                    value
                        .as_deref()
                        .is_none_or(|wanted| found.as_str() == Some(wanted))
                }),
        }
    }
}

/// A resource directly under its provider's namespace (`.../providers/Ns/type/name`), not a
/// child such as a subnet or a record set.
fn is_top_level(id: &str) -> bool {
    let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
    segments
        .iter()
        .position(|segment| segment.eq_ignore_ascii_case("providers"))
        .is_some_and(|position| segments.len() == position + 4)
}

/// A resource as `Resources - List` shows it: its identity, region, SKU and tags (none when
/// the list was filtered by a tag's name and value), never its properties.
fn generic_resource(stored: &Stored, without_tags: bool) -> Value {
    let mut item = Map::new();
    for field in GENERIC_FIELDS {
        if without_tags && *field == "tags" {
            continue;
        }
        if let Some(value) = stored.body.get(*field) {
            item.insert((*field).to_owned(), value.clone());
        }
    }
    item.entry("id").or_insert_with(|| json!(stored.id));
    item.entry("name")
        .or_insert_with(|| json!(name_of(&stored.id)));
    item.entry("type")
        .or_insert_with(|| json!(type_of(&stored.id)));
    Value::Object(item)
}

/// ARM's refusal of a `$filter`.
fn invalid_filter(filter: &str) -> Refusal {
    SimResponse::error(
        400,
        "InvalidFilterInQueryString",
        format!("Invalid $filter '{filter}' specified in the query string."),
    )
}

/// A `$filter` ARM would take but the simulator does not serve.
fn unserved_filter(filter: &str) -> Refusal {
    SimResponse::error(
        400,
        "InvalidFilterInQueryString",
        format!(
            "Invalid $filter '{filter}' specified in the query string. (The simulator serves tagName eq, tagName eq ... and tagValue eq, and resourceType eq on its own.)"
        ),
    )
}

/// One word or one quoted literal of a `$filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Literal(String),
}

/// Splits a `$filter` into words and `'quoted'` literals (a quote inside a literal is
/// doubled, as OData writes it); `None` when a literal is not closed.
fn tokens(filter: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut characters = filter.chars().peekable();
    while let Some(&next) = characters.peek() {
        if next.is_whitespace() {
            characters.next();
        } else if next == '\'' {
            characters.next();
            let mut literal = String::new();
            loop {
                match characters.next()? {
                    '\'' if characters.peek() == Some(&'\'') => {
                        characters.next();
                        literal.push('\'');
                    }
                    '\'' => break,
                    other => literal.push(other),
                }
            }
            tokens.push(Token::Literal(literal));
        } else {
            let mut word = String::new();
            while let Some(&next) = characters.peek() {
                if next.is_whitespace() || next == '\'' {
                    break;
                }
                word.push(next);
                characters.next();
            }
            tokens.push(Token::Word(word));
        }
    }
    Some(tokens)
}

fn parse_filter(filter: Option<&str>, list: ListOf) -> Result<Filter, Refusal> {
    let Some(text) = filter.filter(|text| !text.trim().is_empty()) else {
        return Ok(Filter::Everything);
    };
    let tokens = tokens(text).ok_or_else(|| invalid_filter(text))?;
    // `property eq 'value'`, joined by `and`.
    let mut clauses: Vec<(String, String)> = Vec::new();
    let mut rest = tokens.as_slice();
    loop {
        match rest {
            [
                Token::Word(property),
                Token::Word(operator),
                Token::Literal(value),
                after @ ..,
            ] => {
                if !operator.eq_ignore_ascii_case("eq") {
                    return Err(unserved_filter(text));
                }
                clauses.push((property.to_ascii_lowercase(), value.clone()));
                rest = after;
            }
            _ => return Err(unserved_filter(text)),
        }
        match rest {
            [] => break,
            [Token::Word(joint), after @ ..] if joint.eq_ignore_ascii_case("and") => {
                rest = after;
            }
            _ => return Err(unserved_filter(text)),
        }
    }
    let is_tag = |property: &str| property == "tagname" || property == "tagvalue";
    let tag_clauses = clauses
        .iter()
        .filter(|(property, _)| is_tag(property))
        .count();
    if tag_clauses > 0 {
        // A tag filter stands alone: one name, at most one value, nothing else.
        let name = clauses
            .iter()
            .filter(|(property, _)| property == "tagname")
            .map(|(_, value)| value.clone())
            .collect::<Vec<_>>();
        let value = clauses
            .iter()
            .filter(|(property, _)| property == "tagvalue")
            .map(|(_, value)| value.clone())
            .collect::<Vec<_>>();
        if tag_clauses != clauses.len() || name.len() != 1 || value.len() > 1 {
            return Err(invalid_filter(text));
        }
        return Ok(Filter::Tag {
            name: name[0].clone(),
            value: value.first().cloned(),
        });
    }
    match (list, clauses.as_slice()) {
        (ListOf::Resources, [(property, value)]) if property == "resourcetype" => {
            Ok(Filter::ResourceType(value.clone()))
        }
        (ListOf::Groups, _) => Err(invalid_filter(text)),
        _ => Err(unserved_filter(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(filter: &str, list: ListOf) -> Result<Filter, String> {
        parse_filter(Some(filter), list).map_err(|refusal| {
            let body: Value = serde_json::from_slice(&refusal.body).unwrap();
            format!(
                "{} {}",
                refusal.status,
                body["error"]["code"].as_str().unwrap()
            )
        })
    }

    #[test]
    fn tag_filters_stand_alone_and_the_rest_is_refused_with_arms_code() {
        assert_eq!(
            parse(
                "tagName eq 'ferry-drill' and tagValue eq 'd1'",
                ListOf::Resources
            ),
            Ok(Filter::Tag {
                name: "ferry-drill".into(),
                value: Some("d1".into())
            })
        );
        assert_eq!(
            parse("tagname eq 'it''s'", ListOf::Groups),
            Ok(Filter::Tag {
                name: "it's".into(),
                value: None
            })
        );
        assert_eq!(
            parse(
                "resourceType eq 'Microsoft.Compute/snapshots'",
                ListOf::Resources
            ),
            Ok(Filter::ResourceType("Microsoft.Compute/snapshots".into()))
        );
        let refused = "400 InvalidFilterInQueryString";
        for (filter, list) in [
            (
                "tagName eq 'k' and tagValue eq 'v' and resourceType eq 'Microsoft.Compute/disks'",
                ListOf::Resources,
            ),
            ("resourceGroup eq 'g' and tagName eq 'k'", ListOf::Resources),
            ("tagValue eq 'v'", ListOf::Resources),
            ("tagName eq 'k' and tagName eq 'l'", ListOf::Groups),
            ("tagName eq 'k", ListOf::Resources),
            ("tagName eq 'k' or tagValue eq 'v'", ListOf::Resources),
            ("resourceType eq 'Microsoft.Compute/disks'", ListOf::Groups),
            ("substringof('demo', name)", ListOf::Resources),
        ] {
            assert_eq!(parse(filter, list), Err(refused.to_owned()), "{filter}");
        }
    }

    #[test]
    fn only_top_level_resources_are_items() {
        assert!(is_top_level(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/snapshots/s0"
        ));
        assert!(!is_top_level(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/s"
        ));
    }
}
