//! [`Attributes`]: a resource's named values, kept sorted by name in one vector.
//!
//! A resource has a handful of fields, and a fleet has a hundred thousand resources. A
//! `BTreeMap` allocates a whole node (eleven slots, about 1 KiB with JSON values) for the
//! first entry, which made the maps most of a large spec's memory; a sorted vector holds
//! exactly what is in it, and a binary search over five names is as fast as a tree's.
//! Iteration is by name, like the map it replaces, so everything derived from attributes
//! (plans, diffs, the state file) stays deterministic. It serializes as a JSON object.

use std::borrow::Borrow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::value::Value;

/// Named attributes of a resource, in the order of their names.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    entries: Vec<(String, Value)>,
}

impl Attributes {
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Room for one more entry: exactly one while the map is small (the usual resource, whose
    /// maps are never grown much), doubling beyond, so that building a large map stays linear.
    fn make_room(&mut self) {
        if self.entries.len() == self.entries.capacity() && self.entries.len() < 16 {
            self.entries.reserve_exact(1);
        }
    }

    fn position<Q>(&self, name: &Q) -> Result<usize, usize>
    where
        String: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries
            .binary_search_by(|(key, _)| key.borrow().cmp(name))
    }

    pub fn get<Q>(&self, name: &Q) -> Option<&Value>
    where
        String: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.position(name).ok().map(|at| &self.entries[at].1)
    }

    pub fn get_mut<Q>(&mut self, name: &Q) -> Option<&mut Value>
    where
        String: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.position(name).ok().map(|at| &mut self.entries[at].1)
    }

    /// The name as stored and its value.
    pub fn get_key_value<Q>(&self, name: &Q) -> Option<(&String, &Value)>
    where
        String: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.position(name)
            .ok()
            .map(|at| (&self.entries[at].0, &self.entries[at].1))
    }

    pub fn contains_key<Q>(&self, name: &Q) -> bool
    where
        String: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.position(name).is_ok()
    }

    /// Sets `name` to `value`, returning the value it replaces.
    pub fn insert(&mut self, name: String, value: Value) -> Option<Value> {
        match self.position(name.as_str()) {
            Ok(at) => Some(std::mem::replace(&mut self.entries[at].1, value)),
            Err(at) => {
                self.make_room();
                self.entries.insert(at, (name, value));
                None
            }
        }
    }

    pub fn remove<Q>(&mut self, name: &Q) -> Option<Value>
    where
        String: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.position(name).ok().map(|at| self.entries.remove(at).1)
    }

    /// The value of `name`, inserted by `default` first if there is none.
    pub fn get_or_insert_with(
        &mut self,
        name: &str,
        default: impl FnOnce() -> Value,
    ) -> &mut Value {
        let at = match self.position(name) {
            Ok(at) => at,
            Err(at) => {
                self.make_room();
                self.entries.insert(at, (name.to_owned(), default()));
                at
            }
        };
        &mut self.entries[at].1
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&String, &mut Value) -> bool) {
        self.entries.retain_mut(|(name, value)| keep(name, value));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            inner: self.entries.iter(),
        }
    }

    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (&String, &mut Value)> {
        self.entries.iter_mut().map(|(name, value)| (&*name, value))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + Clone {
        self.entries.iter().map(|(name, _)| name)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + Clone {
        self.entries.iter().map(|(_, value)| value)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut Value> {
        self.entries.iter_mut().map(|(_, value)| value)
    }

    pub fn into_values(self) -> impl DoubleEndedIterator<Item = Value> {
        self.entries.into_iter().map(|(_, value)| value)
    }

    /// Gives back the spare capacity left by building the map entry by entry.
    pub fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
    }
}

/// The entries of [`Attributes`] by reference, in the order of their names.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    inner: std::slice::Iter<'a, (String, Value)>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a String, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|(name, value)| (name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(|(name, value)| (name, value))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a String, &'a Value);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Attributes {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl Extend<(String, Value)> for Attributes {
    fn extend<I: IntoIterator<Item = (String, Value)>>(&mut self, entries: I) {
        let before = self.entries.len();
        self.entries.extend(entries);
        if self.entries.len() > before {
            self.settle();
        }
    }
}

impl FromIterator<(String, Value)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(entries: I) -> Self {
        let mut attributes = Self {
            entries: entries.into_iter().collect(),
        };
        attributes.settle();
        attributes
    }
}

impl<const N: usize> From<[(String, Value); N]> for Attributes {
    fn from(entries: [(String, Value); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl Attributes {
    /// Sorts by name and keeps, of entries with the same name, the last one: what inserting
    /// them one by one into a map would leave.
    fn settle(&mut self) {
        // A stable sort keeps entries of one name in their order, so the last is the latest.
        self.entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        let mut settled: Vec<(String, Value)> = Vec::with_capacity(self.entries.len());
        for entry in self.entries.drain(..) {
            match settled.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => settled.push(entry),
            }
        }
        self.entries = settled;
    }
}

impl<Q> std::ops::Index<&Q> for Attributes
where
    String: Borrow<Q>,
    Q: Ord + ?Sized,
{
    type Output = Value;

    fn index(&self, name: &Q) -> &Value {
        self.get(name).expect("no attribute of that name")
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, value) in &self.entries {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AttributesVisitor;

        impl<'de> Visitor<'de> for AttributesVisitor {
            type Value = Attributes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of attribute names to values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(entries.into_iter().collect())
            }
        }

        deserializer.deserialize_map(AttributesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn named(pairs: &[(&str, Value)]) -> Attributes {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }

    #[test]
    fn entries_come_out_in_the_order_of_their_names() {
        let mut attributes = Attributes::new();
        for name in ["size_gb", "location", "sku", "zone"] {
            attributes.insert(name.to_owned(), json!(name));
        }
        let names: Vec<&String> = attributes.keys().collect();
        assert_eq!(names, ["location", "size_gb", "sku", "zone"]);
        assert_eq!(attributes.get("sku"), Some(&json!("sku")));
        assert_eq!(attributes.get("nope"), None);
    }

    #[test]
    fn inserting_a_name_again_replaces_its_value_and_returns_the_old_one() {
        let mut attributes = named(&[("sku", json!("Premium_LRS"))]);
        assert_eq!(
            attributes.insert("sku".to_owned(), json!("PremiumV2_LRS")),
            Some(json!("Premium_LRS"))
        );
        assert_eq!(attributes.len(), 1);
        assert_eq!(attributes.remove("sku"), Some(json!("PremiumV2_LRS")));
        assert!(attributes.is_empty());
        assert_eq!(attributes.remove("sku"), None);
    }

    #[test]
    fn collecting_keeps_the_last_of_each_name_like_a_map_would() {
        let attributes = named(&[
            ("b", json!(1)),
            ("a", json!(2)),
            ("b", json!(3)),
            ("c", json!(4)),
            ("a", json!(5)),
        ]);
        let pairs: Vec<(&String, &Value)> = attributes.iter().collect();
        assert_eq!(
            format!("{pairs:?}"),
            r#"[("a", Number(5)), ("b", Number(3)), ("c", Number(4))]"#
        );
        let mut extended = attributes.clone();
        extended.extend([("b".to_owned(), json!(6)), ("0".to_owned(), json!(7))]);
        assert_eq!(
            serde_json::to_string(&extended).unwrap(),
            r#"{"0":7,"a":5,"b":6,"c":4}"#
        );
    }

    #[test]
    fn it_reads_and_writes_json_objects_even_empty_and_unsorted_ones() {
        assert_eq!(serde_json::to_string(&Attributes::new()).unwrap(), "{}");
        let read: Attributes = serde_json::from_str(r#"{"zone":"1","disk":{"lun":2}}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&read).unwrap(),
            r#"{"disk":{"lun":2},"zone":"1"}"#
        );
        let refused = serde_json::from_str::<Attributes>("[1, 2]").unwrap_err();
        assert!(
            refused.to_string().contains("a map of attribute names"),
            "{refused}"
        );
    }

    #[test]
    fn a_missing_name_can_be_filled_in_place() {
        let mut attributes = named(&[("tags", json!({}))]);
        attributes
            .get_or_insert_with("labels", || json!([]))
            .as_array_mut()
            .unwrap()
            .push(json!("x"));
        *attributes.get_or_insert_with("tags", || json!(null)) = json!({"a": 1});
        assert_eq!(
            serde_json::to_string(&attributes).unwrap(),
            r#"{"labels":["x"],"tags":{"a":1}}"#
        );
        attributes.retain(|name, _| name != "labels");
        assert_eq!(attributes.keys().count(), 1);
    }
}
