//! The test binary's Azurite (`ferry_servers::Azurite`: HTTPS with a generated CA, `--oauth
//! basic`, a free loopback port) and backends on it.
//!
//! One Azurite serves the whole test binary. It lives in a `static`, which is never dropped:
//! its shell stops it when the test process's end closes the shell's standard input, so no
//! server outlives the tests.

use std::sync::OnceLock;
use std::time::Duration;

use ferry_arm::CredentialChoice;
use ferry_core::Secret;
use ferry_servers::Azurite;
use ferry_state_blob::{BlobAuth, BlobBackend, BlobStateConfig};

pub struct TestAzurite {
    pub server: Azurite,
    pub port: u16,
    _directory: tempfile::TempDir,
}

/// A config for `blob` in `container` of `server`, authenticated with a bearer token.
pub fn config(
    server: &Azurite,
    container: &str,
    blob: &str,
    local: &std::path::Path,
) -> BlobStateConfig {
    BlobStateConfig {
        container_url: url::Url::parse(&server.container_url(container)).unwrap(),
        blob: blob.to_owned(),
        auth: BlobAuth::Credential(CredentialChoice::StaticToken(Secret::new(
            ferry_servers::azurite_token(),
        ))),
        ca_file: Some(server.ca_file.clone()),
        local_journal: local.join("journal.jsonl"),
        lease: BlobStateConfig::SHORTEST_LEASE,
        request_timeout: Duration::from_secs(30),
        retry_for: Duration::from_secs(30),
    }
}

/// The one Azurite of this test binary, started on first use.
pub fn azurite() -> &'static TestAzurite {
    static AZURITE: OnceLock<TestAzurite> = OnceLock::new();
    AZURITE.get_or_init(|| {
        let directory = tempfile::tempdir().unwrap();
        let server = Azurite::start(directory.path()).unwrap_or_else(|error| panic!("{error}"));
        TestAzurite {
            port: server.port,
            server,
            _directory: directory,
        }
    })
}

impl TestAzurite {
    /// A config for `blob` in `container`, authenticated with a bearer token.
    pub fn config(&self, container: &str, blob: &str, local: &std::path::Path) -> BlobStateConfig {
        config(&self.server, container, blob, local)
    }

    /// A backend on a fresh container (so tests do not share blobs), created first.
    pub fn backend(&self, container: &str, blob: &str, local: &std::path::Path) -> BlobBackend {
        let backend = BlobBackend::new(self.config(container, blob, local)).unwrap();
        backend.create_container().unwrap();
        backend
    }

    /// A container SAS URL, signed with the development account's key.
    pub fn sas_url(&self, container: &str) -> String {
        self.server.sas_url(container)
    }
}
