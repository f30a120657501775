//! A real Azurite blob service for the tests: HTTPS with a generated CA, `--oauth basic` so that
//! the client sends Entra-style bearer tokens exactly as against Azure, on a free loopback port.
//!
//! One Azurite serves the whole test binary. It is started through a small shell that kills it
//! when the test process's end closes its stdin, so no server outlives the tests.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_arm::CredentialChoice;
use ferry_core::Secret;
use ferry_state_blob::{BlobAuth, BlobBackend, BlobStateConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// Azurite's well-known development account and key (public, documented by Microsoft).
pub const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    pub port: u16,
    pub ca_file: PathBuf,
    _directory: tempfile::TempDir,
    _child: Child,
}

/// The one Azurite of this test binary, started on first use.
pub fn azurite() -> &'static Azurite {
    static AZURITE: OnceLock<Azurite> = OnceLock::new();
    AZURITE.get_or_init(start)
}

fn start() -> Azurite {
    let directory = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ferry azurite test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server = server_params.signed_by(&server_key, &issuer).unwrap();
    let ca_file = directory.path().join("ca.pem");
    let cert_file = directory.path().join("cert.pem");
    let key_file = directory.path().join("key.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, server.pem()).unwrap();
    std::fs::write(&key_file, server_key.serialize_pem()).unwrap();
    let location = directory.path().join("data");
    std::fs::create_dir_all(&location).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script =
        r#"azurite-blob "$@" & server=$!; read -r _; kill "$server" 2>/dev/null; wait "$server""#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .args(["--oauth", "basic", "--silent", "--skipApiVersionCheck"])
        .arg("--cert")
        .arg(&cert_file)
        .arg("--key")
        .arg(&key_file)
        .arg("--location")
        .arg(&location)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("azurite-blob must be installed: run xtask/setup/50-azurite.sh");
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Azurite {
                port,
                ca_file,
                _directory: directory,
                _child: child,
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            panic!(
                "azurite-blob exited ({status}) before listening: {stderr}\nis it installed? run xtask/setup/50-azurite.sh"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("azurite-blob did not listen on 127.0.0.1:{port} within 30 s");
}

impl Azurite {
    pub fn container_url(&self, container: &str) -> url::Url {
        url::Url::parse(&format!(
            "https://127.0.0.1:{}/{ACCOUNT}/{container}",
            self.port
        ))
        .unwrap()
    }

    /// A config for `blob` in `container`, authenticated with a bearer token.
    pub fn config(&self, container: &str, blob: &str, local: &std::path::Path) -> BlobStateConfig {
        BlobStateConfig {
            container_url: self.container_url(container),
            blob: blob.to_owned(),
            auth: BlobAuth::Credential(CredentialChoice::StaticToken(Secret::new(token()))),
            ca_file: Some(self.ca_file.clone()),
            local_journal: local.join("journal.jsonl"),
            lease: BlobStateConfig::SHORTEST_LEASE,
            request_timeout: Duration::from_secs(30),
        }
    }

    /// A backend on a fresh container (so tests do not share blobs), created first.
    pub fn backend(&self, container: &str, blob: &str, local: &std::path::Path) -> BlobBackend {
        let backend = BlobBackend::new(self.config(container, blob, local)).unwrap();
        backend.create_container().unwrap();
        backend
    }

    /// A container SAS URL (read, add, create, write, delete, list), signed with the
    /// development account's key, as `az storage container generate-sas` makes one.
    pub fn sas_url(&self, container: &str) -> String {
        let permissions = "racwdl";
        let expiry = "2099-01-01T00:00:00Z";
        let version = "2018-11-09";
        let resource = format!("/blob/{ACCOUNT}/{container}");
        // The service SAS string-to-sign of version 2018-11-09: permissions, start, expiry,
        // resource, identifier, IP, protocol, version, resource type, snapshot time, and the
        // five response header overrides.
        let to_sign = [
            permissions,
            "",
            expiry,
            &resource,
            "",
            "",
            "https",
            version,
            "c",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        .join("\n");
        let key = data_encoding::BASE64
            .decode(ACCOUNT_KEY.as_bytes())
            .unwrap();
        let signature = data_encoding::BASE64.encode(&hmac_sha256(&key, to_sign.as_bytes()));
        let mut url = self.container_url(container);
        url.query_pairs_mut()
            .append_pair("sv", version)
            .append_pair("se", expiry)
            .append_pair("sr", "c")
            .append_pair("sp", permissions)
            .append_pair("spr", "https")
            .append_pair("sig", &signature);
        url.to_string()
    }
}

/// A well-formed Entra ID access token for storage. Azurite's `--oauth basic` checks its shape,
/// issuer, audience and times, not its signature.
pub fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let encode = |value: serde_json::Value| {
        data_encoding::BASE64URL_NOPAD.encode(value.to_string().as_bytes())
    };
    let header = encode(serde_json::json!({"alg": "RS256", "typ": "JWT"}));
    let claims = encode(serde_json::json!({
        "aud": "https://storage.azure.com",
        "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 6 * 3600,
        "oid": "00000000-0000-0000-0000-000000000001",
        "tid": "00000000-0000-0000-0000-000000000000",
    }));
    format!("{header}.{claims}.c2lnbmF0dXJl")
}

/// HMAC-SHA256 (RFC 2104) over sha2, to sign the test SAS without another dependency.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}
