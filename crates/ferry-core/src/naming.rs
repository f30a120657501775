//! Naming rules of the Azure resource types ferry manages, checked before anything is sent.
//!
//! The figures follow Azure's published naming rules for each resource type. A name holding
//! `${generation}` is checked with a two-digit generation in its place.

/// One resource type's rule.
#[derive(Debug, Clone, Copy)]
pub struct NameRule {
    pub what: &'static str,
    pub min: usize,
    pub max: usize,
    /// Characters allowed besides ASCII letters and digits.
    pub extra: &'static str,
    /// Characters allowed at the start besides letters and digits.
    pub first_extra: &'static str,
    /// Characters allowed at the end besides letters and digits.
    pub last_extra: &'static str,
}

pub const RESOURCE_GROUP: NameRule = NameRule {
    what: "a resource group name",
    min: 1,
    max: 90,
    extra: "-_.()",
    first_extra: "-_.()",
    last_extra: "-_()",
};

pub const VIRTUAL_NETWORK: NameRule = NameRule {
    what: "a virtual network name",
    min: 2,
    max: 64,
    extra: "-_.",
    first_extra: "",
    last_extra: "_",
};

pub const PUBLIC_IP: NameRule = NameRule {
    what: "a public IP address name",
    min: 1,
    max: 80,
    extra: "-_.",
    first_extra: "",
    last_extra: "_",
};

pub const VIRTUAL_MACHINE: NameRule = NameRule {
    what: "a Linux virtual machine name",
    min: 1,
    max: 64,
    extra: "-_.",
    first_extra: "-.",
    last_extra: "_",
};

pub const MANAGED_DISK: NameRule = NameRule {
    what: "a managed disk name",
    min: 1,
    max: 80,
    extra: "-_.",
    first_extra: "",
    last_extra: "_",
};

pub const AKS_CLUSTER: NameRule = NameRule {
    what: "an AKS cluster name",
    min: 1,
    max: 63,
    extra: "-_",
    first_extra: "",
    last_extra: "",
};

pub const AKS_DNS_PREFIX: NameRule = NameRule {
    what: "an AKS DNS prefix",
    min: 1,
    max: 54,
    extra: "-",
    first_extra: "",
    last_extra: "",
};

impl NameRule {
    /// Checks a name; the error says what the rule is.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let name = match crate::value::holds_open(name) {
            true => std::borrow::Cow::Owned(name.replace("${generation}", "10")),
            false => std::borrow::Cow::Borrowed(name),
        };
        if crate::value::holds_open(&name) {
            // Built from another resource's output: only known at apply time.
            return Ok(());
        }
        let length = name.chars().count();
        let describe = || {
            let mut allowed = String::from("letters, digits");
            for c in self.extra.chars() {
                allowed.push_str(&format!(", `{c}`"));
            }
            format!(
                "{} must be {}-{} characters of {allowed}",
                self.what, self.min, self.max
            )
        };
        if length < self.min {
            return Err(format!("`{name}` is too short: {}", describe()));
        }
        if length > self.max {
            return Err(format!(
                "`{name}` is too long ({length} characters): {}",
                describe()
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && !self.extra.contains(*c))
        {
            return Err(format!("`{name}` contains `{bad}`: {}", describe()));
        }
        let first = name.chars().next().unwrap_or('a');
        if !first.is_ascii_alphanumeric() && !self.first_extra.contains(first) {
            return Err(format!(
                "`{name}` starts with `{first}`: {} must start with a letter or digit",
                self.what
            ));
        }
        let last = name.chars().last().unwrap_or('a');
        if !last.is_ascii_alphanumeric() && !self.last_extra.contains(last) {
            return Err(format!(
                "`{name}` ends with `{last}`: {} cannot end with `{last}`",
                self.what
            ));
        }
        Ok(())
    }
}

/// Checks a resource's string field against a rule, as a [`crate::FieldError`] for that field.
pub fn check_field(
    spec: &crate::ResourceSpec,
    field: &str,
    rule: &NameRule,
) -> Option<crate::FieldError> {
    let name = spec.str_field(field)?;
    rule.check(name).err().map(|message| {
        crate::FieldError::new(field, message)
            .with_help(format!("rename it to match the rule for {}", rule.what))
    })
}

/// Checks that a string field holds one of the known choices, naming them when it does not.
pub fn check_choice(
    spec: &crate::ResourceSpec,
    field: &str,
    choices: &[&str],
) -> Option<crate::FieldError> {
    let value = spec.str_field(field)?;
    if crate::value::holds_open(value) || choices.contains(&value) {
        return None;
    }
    Some(
        crate::FieldError::new(field, format!("`{value}` is not a valid {field}"))
            .with_help(format!("use one of: {}", choices.join(", "))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_against_each_rule() {
        let cases = [
            (RESOURCE_GROUP, "data100-g${generation}"),
            (RESOURCE_GROUP, "data100."),
            (AKS_CLUSTER, "hub_"),
            (MANAGED_DISK, "home 0"),
            (AKS_DNS_PREFIX, &"x".repeat(55)),
            (VIRTUAL_NETWORK, "v"),
            (VIRTUAL_MACHINE, "_nfs"),
        ];
        let results: Vec<String> = cases
            .iter()
            .map(|(rule, name)| match rule.check(name) {
                Ok(()) => "ok".to_owned(),
                Err(message) => message,
            })
            .collect();
        assert_eq!(
            results,
            [
                "ok",
                "`data100.` ends with `.`: a resource group name cannot end with `.`",
                "`hub_` ends with `_`: an AKS cluster name cannot end with `_`",
                "`home 0` contains ` `: a managed disk name must be 1-80 characters of letters, digits, `-`, `_`, `.`",
                "`xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx` is too long (55 characters): an AKS DNS prefix must be 1-54 characters of letters, digits, `-`",
                "`v` is too short: a virtual network name must be 2-64 characters of letters, digits, `-`, `_`, `.`",
                "`_nfs` starts with `_`: a Linux virtual machine name must start with a letter or digit",
            ]
        );
    }
}
