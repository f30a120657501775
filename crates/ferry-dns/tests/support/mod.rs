//! Test harness: a real BIND 9 `named` on a free loopback port, serving one zone that accepts
//! updates signed with a TSIG key generated for the test, and `dig` to see what it serves.
//!
//! The binaries come from Debian's `bind9` and `bind9-dnsutils` (`xtask/setup/40-dns.sh`).
//! Each test starts its own server, so tests never see each other's records; the server is
//! killed when the handle is dropped, even when the test fails.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_core::{
    Action, ApplyContext, Attributes, InstanceAddress, Provider, Step, StepError, StepId,
    StepOutcome,
};
use serde_json::json;

/// The zone every test server holds.
pub const ZONE: &str = "ferry.test";

/// A record that exists before ferry runs, with no ownership marker.
pub const LEGACY_NAME: &str = "legacy";
pub const LEGACY_VALUE: &str = "192.0.2.99";

/// A running `named`.
#[derive(Debug)]
pub struct Bind {
    child: Child,
    pub folder: tempfile::TempDir,
    pub port: u16,
    /// The base64 TSIG secret the server accepts.
    pub secret: String,
}

fn need(binary: &str) -> PathBuf {
    for folder in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(folder).join(binary);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "`{binary}` is not installed: run xtask/setup/40-dns.sh (Debian's bind9 and bind9-dnsutils)"
    );
}

/// `name` relative to the test zone, or `@`, as dig wants it.
fn fqdn(name: &str) -> String {
    if name == "@" {
        format!("{ZONE}.")
    } else {
        format!("{name}.{ZONE}.")
    }
}

fn free_port() -> u16 {
    // The port is free for TCP now; named takes it for TCP and UDP a moment later.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh TSIG secret from `tsig-keygen`, the way an operator makes one.
pub fn generate_secret() -> String {
    let output = Command::new(need("tsig-keygen"))
        .args(["-a", "hmac-sha256", "ferry"])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    text.split("secret \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("tsig-keygen prints a secret")
        .to_owned()
}

impl Bind {
    pub fn start() -> Bind {
        let named = need("named");
        let folder = tempfile::tempdir().unwrap();
        let dir = folder.path();
        let secret = generate_secret();
        let port = free_port();
        let zone_file = dir.join(format!("{ZONE}.zone"));
        std::fs::write(
            &zone_file,
            format!(
                "$TTL 300\n\
                 @ IN SOA ns.{ZONE}. admin.{ZONE}. 1 3600 600 86400 60\n\
                 @ IN NS ns.{ZONE}.\n\
                 ns IN A 127.0.0.1\n\
                 {LEGACY_NAME} 600 IN A {LEGACY_VALUE}\n"
            ),
        )
        .unwrap();
        let config = dir.join("named.conf");
        let folder_text = dir.display();
        std::fs::write(
            &config,
            format!(
                "options {{\n\
                   directory \"{folder_text}\";\n\
                   pid-file \"{folder_text}/named.pid\";\n\
                   session-keyfile \"{folder_text}/session.key\";\n\
                   managed-keys-directory \"{folder_text}\";\n\
                   listen-on port {port} {{ 127.0.0.1; }};\n\
                   listen-on-v6 {{ none; }};\n\
                   recursion no;\n\
                   dnssec-validation no;\n\
                   notify no;\n\
                 }};\n\
                 controls {{ }};\n\
                 key \"ferry\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n\
                 zone \"{ZONE}\" {{\n\
                   type primary;\n\
                   file \"{}\";\n\
                   allow-update {{ key \"ferry\"; }};\n\
                 }};\n",
                zone_file.display()
            ),
        )
        .unwrap();
        let child = Command::new(named)
            .args(["-g", "-n", "1", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("named.log")).unwrap())
            .spawn()
            .unwrap();
        let mut bind = Bind {
            child,
            folder,
            port,
            secret,
        };
        bind.wait_until_ready();
        bind
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("named exited ({status}) before answering:\n{}", self.log());
            }
            let soa = self.dig("@", "SOA");
            if !soa.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!("named did not answer within 30s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.folder.path().join("named.log")).unwrap_or_default()
    }

    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the server answers for `name` (relative to the zone, or `@`), by `dig +short`,
    /// sorted: the test's own view, independent of ferry's code.
    pub fn dig(&self, name: &str, record_type: &str) -> Vec<String> {
        let output = Command::new(need("dig"))
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+short",
                "+norecurse",
                "+time=2",
                "+tries=1",
                &fqdn(name),
                record_type,
            ])
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.starts_with(';') && !line.trim().is_empty())
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    /// The TTL the server gives `name`'s records of `record_type`.
    pub fn dig_ttl(&self, name: &str, record_type: &str) -> Option<u32> {
        let output = Command::new(need("dig"))
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+noall",
                "+answer",
                "+norecurse",
                &fqdn(name),
                record_type,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| line.split_whitespace().nth(1)?.parse().ok())
    }

    /// The `[zones."ferry.test"]` settings for this server, with `secret` in a key file as
    /// `tsig-keygen` writes it. (The tests cannot set environment variables: that is unsafe
    /// code in edition 2024, which the workspace forbids.)
    pub fn zones_with_secret(&self, secret: &str) -> BTreeMap<String, Attributes> {
        // Numbered within this server's folder, so that names do not depend on which other
        // tests ran in the same process.
        let number = std::fs::read_dir(self.folder.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| entry.file_name().to_string_lossy().starts_with("client-"))
                    .count()
            })
            .unwrap_or(0);
        let file = self.folder.path().join(format!("client-{number}.key"));
        std::fs::write(
            &file,
            format!("key \"ferry\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"),
        )
        .unwrap();
        self.zones_with(json!({ "tsig_secret_file": file }))
    }

    /// The zone settings with the right secret.
    pub fn zones(&self) -> BTreeMap<String, Attributes> {
        self.zones_with_secret(&self.secret.clone())
    }

    /// The zone settings for this server plus `extra`.
    pub fn zones_with(&self, extra: serde_json::Value) -> BTreeMap<String, Attributes> {
        let mut settings: Attributes = serde_json::from_value(json!({
            "backend": "rfc2136",
            "server": self.server(),
            "tsig_key_name": "ferry",
            "tsig_algorithm": "hmac-sha256",
        }))
        .unwrap();
        let extra: Attributes = serde_json::from_value(extra).unwrap();
        settings.extend(extra);
        BTreeMap::from([(ZONE.to_owned(), settings)])
    }

    /// Replaces the test server's port in a message, for snapshots.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.server(), "127.0.0.1:PORT")
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A step for `dns_record.NAME` with `inputs`.
pub fn step(name: &str, action: Action, inputs: serde_json::Value) -> Step {
    let address: InstanceAddress = format!("dns_record.{name}").parse().unwrap();
    Step {
        id: StepId::new(&address, action),
        address,
        action,
        reason: "test".to_owned(),
        after: Vec::new(),
        estimate_seconds: 2,
        changes: Default::default(),
        inputs: serde_json::from_value(inputs).unwrap(),
        warning: None,
    }
}

/// The progress lines, recorded resume tokens and remembered outputs an apply sees.
#[derive(Debug, Default)]
pub struct Recorder {
    pub lines: Mutex<Vec<String>>,
    pub resume_tokens: Mutex<Vec<String>>,
    pub outputs: Mutex<BTreeMap<InstanceAddress, Attributes>>,
}

impl Recorder {
    /// A recorder for a later apply on the same state: no lines or resume tokens yet, and the
    /// outputs this one remembers (what a delete step, which carries no inputs, works from).
    pub fn next_apply(&self) -> Recorder {
        Recorder {
            outputs: Mutex::new(self.outputs.lock().unwrap().clone()),
            ..Recorder::default()
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// What the steps recorded through `record_resume_token`, in order: what the engine
    /// journals and gives back to a resumed step.
    pub fn resume_tokens(&self) -> Vec<String> {
        self.resume_tokens.lock().unwrap().clone()
    }

    /// Applies `step` as the engine would: progress lines kept, outputs remembered after a
    /// success and forgotten after a delete.
    pub async fn apply(
        &self,
        provider: &dyn Provider,
        step: &Step,
    ) -> Result<StepOutcome, StepError> {
        self.apply_resuming(provider, step, None).await
    }

    /// Applies `step` as a resumed apply would, with the resume token an interrupted attempt
    /// recorded.
    pub async fn apply_resuming(
        &self,
        provider: &dyn Provider,
        step: &Step,
        resume_token: Option<&str>,
    ) -> Result<StepOutcome, StepError> {
        let progress = |line: String| self.lines.lock().unwrap().push(line);
        let outputs =
            |instance: &InstanceAddress| self.outputs.lock().unwrap().get(instance).cloned();
        let record = |token: String| self.resume_tokens.lock().unwrap().push(token);
        let result = provider
            .apply(
                step,
                ApplyContext {
                    inputs: &step.inputs,
                    outputs: &outputs,
                    progress: &progress,
                    resume_token,
                    record_resume_token: &record,
                },
            )
            .await;
        if let Ok(outcome) = &result {
            let mut remembered = self.outputs.lock().unwrap();
            if step.action == Action::Delete {
                remembered.remove(&step.address);
            } else {
                remembered.insert(step.address.clone(), outcome.outputs.clone());
            }
        }
        result
    }
}
