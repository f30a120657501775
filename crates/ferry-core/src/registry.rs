//! Registries that map each kind to its rules and to its provider.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::address::Kind;
use crate::provider::{KindRules, Provider};

/// The rules of every kind a spec may use. The spec loader and the planner take one of these.
#[derive(Default)]
pub struct RuleBook {
    rules: BTreeMap<Kind, Arc<dyn KindRules>>,
}

impl RuleBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the rules of one kind.
    pub fn with(mut self, rules: Box<dyn KindRules>) -> Self {
        self.rules.insert(rules.kind(), Arc::from(rules));
        self
    }

    /// The rules of one kind, to keep beside something that outlives this book (the simulated
    /// world's provider of that kind).
    pub fn shared(&self, kind: Kind) -> Option<Arc<dyn KindRules>> {
        self.rules.get(&kind).cloned()
    }

    pub fn get(&self, kind: Kind) -> Option<&dyn KindRules> {
        self.rules.get(&kind).map(|rules| &**rules)
    }

    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        self.rules.keys().copied()
    }
}

impl fmt::Debug for RuleBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.rules.keys()).finish()
    }
}

/// The providers an apply (or an observe) can call, one per kind.
#[derive(Default, Clone)]
pub struct Providers {
    providers: BTreeMap<Kind, Arc<dyn Provider>>,
}

impl Providers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, provider: Arc<dyn Provider>) -> Self {
        self.providers.insert(provider.kind(), provider);
        self
    }

    pub fn get(&self, kind: Kind) -> Option<&Arc<dyn Provider>> {
        self.providers.get(&kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        self.providers.keys().copied()
    }
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.providers.keys()).finish()
    }
}
