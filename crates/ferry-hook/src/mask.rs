//! Keeps secrets out of hook output: values of environment variables whose names look secret
//! are replaced by `[redacted]` in every progress line and error message.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The text that stands for a masked value.
pub const REDACTED: &str = "[redacted]";

/// Names that carry configuration, not secrets, although they would match a pattern below.
const NOT_SECRET: &[&str] = &["KUBECONFIG"];

/// Whether an environment variable's name says it holds a secret: `…SECRET`, `…TOKEN`,
/// `…PASSWORD`, `…KEY` (and `…_KEY_…`), in any case, but not `KUBECONFIG`.
pub fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    if NOT_SECRET.contains(&name.as_str()) {
        return false;
    }
    ["SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL"]
        .iter()
        .any(|word| name.contains(word))
        || name.ends_with("KEY")
        || name.contains("_KEY_")
}

/// Replaces secret values in text.
#[derive(Clone, Default)]
pub struct Masker {
    /// Longest first, so that a secret containing another is masked whole.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} secrets)", self.secrets.len())
    }
}

impl Masker {
    /// A masker for the secret-looking variables of `env`. Values shorter than 4 characters
    /// are not masked: replacing every `1` in the output would hide everything and protect
    /// nothing.
    pub fn for_env(env: &BTreeMap<String, String>) -> Self {
        let mut secrets: Vec<String> = env
            .iter()
            .filter(|(name, value)| looks_secret(name) && value.len() >= 4)
            .map(|(_, value)| value.clone())
            .collect();
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Also masks `values` (those of at least 4 characters), whatever their names.
    pub fn with_values(mut self, values: impl IntoIterator<Item = String>) -> Self {
        self.secrets
            .extend(values.into_iter().filter(|value| value.len() >= 4));
        self.secrets
            .sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        self.secrets.dedup();
        self
    }

    pub fn mask(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }
}

/// What ferry's state keeps of a secret value: enough to tell whether it changed, nothing to
/// recover it from.
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let hex: String = digest[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{REDACTED} sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised() {
        for name in [
            "CLIENT_SECRET",
            "GITHUB_TOKEN",
            "DB_PASSWORD",
            "API_KEY",
            "ssh_key",
            "AWS_SECRET_ACCESS_KEY",
            "TSIG_KEY_B64",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in [
            "KUBECONFIG",
            "HUB_HOST",
            "INGRESS_IP",
            "NFS_EXPORT",
            "MONKEYS",
        ] {
            assert!(!looks_secret(name), "{name}");
        }
    }

    #[test]
    fn secret_values_are_masked_longest_first() {
        let env = BTreeMap::from([
            ("API_TOKEN".to_owned(), "abcd".to_owned()),
            ("OTHER_TOKEN".to_owned(), "abcdef".to_owned()),
            ("HOST".to_owned(), "hub.example.org".to_owned()),
            ("SHORT_KEY".to_owned(), "x1".to_owned()),
        ]);
        let masker = Masker::for_env(&env);
        assert_eq!(
            masker.mask("token abcdef and abcd on hub.example.org x1"),
            "token [redacted] and [redacted] on hub.example.org x1"
        );
        assert!(fingerprint("abcd").starts_with("[redacted] sha256:"));
        assert_ne!(fingerprint("abcd"), fingerprint("abce"));
    }
}
