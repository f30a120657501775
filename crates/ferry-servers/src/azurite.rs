//! Azurite's blob service, the Azure Blob Storage emulator the state-backend tests run against:
//! HTTPS with a certificate from a CA generated here, `--oauth basic` so that a client sends
//! Entra-style bearer tokens exactly as against Azure, on a free loopback port.
//!
//! It can be stopped and started again on the same port with the same `--location` folder,
//! where it keeps its blobs: the storage service going away in the middle of an apply and
//! coming back with its data.
//!
//! Azurite runs under a small shell that stops it when its standard input closes: when the
//! guard is dropped, and also when the test process ends without dropping it (a `static`, a
//! panic that aborts, a kill), since the process's end closes the pipe. So no Azurite outlives
//! the process that started it.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::{ServerError, create_folder, error, free_port, need, wait_ready, write};

/// Azurite's well-known development account (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// The development account's key (public, documented by Microsoft): it signs test SAS URLs.
const AZURITE_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long a stopping Azurite may take to save its data and exit before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// An Azurite blob service on `https://127.0.0.1:PORT/devstoreaccount1`, stopped when dropped.
#[derive(Debug)]
pub struct Azurite {
    pub port: u16,
    /// The PEM certificate of the CA that signed Azurite's certificate: what a client trusts.
    pub ca_file: PathBuf,
    /// Azurite's `--location`: where it keeps its blobs across a stop and a start.
    pub location: PathBuf,
    /// What Azurite printed, appended over every start.
    pub log: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    server: Option<Server>,
}

/// One running Azurite under its shell.
#[derive(Debug)]
struct Server {
    shell: Child,
    /// The shell reads it; closing it makes the shell stop Azurite.
    stdin: Option<ChildStdin>,
    /// Azurite's own pid, to kill it should it not stop when asked.
    pid: u32,
}

impl Server {
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.shell.try_wait().ok().flatten()
    }

    /// Asks Azurite to stop (SIGTERM from its shell: it saves its data and closes) and waits;
    /// kills it if it lingers.
    fn stop(&mut self) -> Result<(), ServerError> {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_WITHIN;
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.exited().is_some() {
            return Ok(());
        }
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        let _ = self.shell.kill();
        let _ = self.shell.wait();
        Err(error(
            "azurite-blob",
            format!(
                "did not stop within {}s of SIGTERM and was killed: its data may not be saved",
                STOP_WITHIN.as_secs()
            ),
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Runs `azurite-blob` with the arguments after `$1` (its log file) in the background,
/// prints its pid, and stops it with SIGTERM once standard input closes.
const SHELL: &str = r#"log=$1; shift
azurite-blob "$@" >>"$log" 2>&1 & server=$!
echo "$server"
read -r _
kill "$server" 2>/dev/null
wait "$server""#;

impl Azurite {
    /// Generates a CA and a certificate for 127.0.0.1 in `folder`, and starts Azurite on a
    /// free port keeping its data in `folder/data`.
    pub fn start(folder: &Path) -> Result<Azurite, ServerError> {
        need(
            "azurite-blob",
            "azurite (npm; run xtask/setup/50-azurite.sh)",
        )?;
        create_folder("azurite-blob", folder)?;
        let (ca_pem, cert_pem, key_pem) = certificates().map_err(|failure| {
            error(
                "azurite-blob",
                format!("cannot make its certificate: {failure}"),
            )
        })?;
        let ca_file = folder.join("ca.pem");
        let cert_file = folder.join("cert.pem");
        let key_file = folder.join("key.pem");
        write("azurite-blob", &ca_file, &ca_pem)?;
        write("azurite-blob", &cert_file, &cert_pem)?;
        write("azurite-blob", &key_file, &key_pem)?;
        let location = folder.join("data");
        create_folder("azurite-blob", &location)?;
        let mut azurite = Azurite {
            port: free_port()?,
            ca_file,
            location,
            log: folder.join("azurite.log"),
            cert_file,
            key_file,
            server: None,
        };
        azurite.start_again()?;
        Ok(azurite)
    }

    /// Starts Azurite again after [`stop`](Self::stop), on the same port with the same
    /// location, so that it serves the blobs it had. Does nothing while it runs.
    pub fn start_again(&mut self) -> Result<(), ServerError> {
        if self.is_running() {
            return Ok(());
        }
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(SHELL)
            .arg("sh")
            .arg(&self.log)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &self.port.to_string(),
            ])
            .args(["--oauth", "basic", "--silent", "--skipApiVersionCheck"])
            // Tests talk only to loopback.
            .arg("--disableTelemetry")
            .arg("--cert")
            .arg(&self.cert_file)
            .arg("--key")
            .arg(&self.key_file)
            .arg("--location")
            .arg(&self.location)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|failure| error("azurite-blob", format!("cannot start sh: {failure}")))?;
        let stdin = shell.stdin.take();
        let pid = shell
            .stdout
            .take()
            .and_then(|stdout| BufReader::new(stdout).lines().next())
            .and_then(Result::ok)
            .and_then(|line| line.trim().parse().ok());
        let Some(pid) = pid else {
            let _ = shell.kill();
            let _ = shell.wait();
            return Err(error("azurite-blob", "its shell did not print its pid"));
        };
        let mut server = Server { shell, stdin, pid };
        let port = self.port;
        wait_ready("azurite-blob", &mut || server.exited(), &self.log, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })?;
        self.server = Some(server);
        Ok(())
    }

    /// Stops Azurite as a service shuts down (SIGTERM: it saves its data and closes its
    /// port), and waits until it has exited. Its data stays in [`location`](Self::location).
    pub fn stop(&mut self) -> Result<(), ServerError> {
        match self.server.take() {
            Some(mut server) => server.stop(),
            None => Ok(()),
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.server
            .as_mut()
            .is_some_and(|server| server.exited().is_none())
    }

    /// `https://127.0.0.1:PORT/devstoreaccount1`: the account's blob endpoint.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// The URL of `container`, without a query.
    pub fn container_url(&self, container: &str) -> String {
        format!("{}/{container}", self.endpoint())
    }

    /// A container SAS URL (read, add, create, write, delete, list), signed with the
    /// development account's key, as `az storage container generate-sas` makes one.
    pub fn sas_url(&self, container: &str) -> String {
        let permissions = "racwdl";
        let expiry = "2099-01-01T00:00:00Z";
        let version = "2018-11-09";
        let resource = format!("/blob/{AZURITE_ACCOUNT}/{container}");
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
            .decode(AZURITE_ACCOUNT_KEY.as_bytes())
            .expect("the development account key is base64");
        let signature = data_encoding::BASE64.encode(&hmac_sha256(&key, to_sign.as_bytes()));
        // Base64 holds `+`, `/` and `=`, which a query must escape.
        let signature: String = signature
            .chars()
            .map(|c| match c {
                '+' => "%2B".to_owned(),
                '/' => "%2F".to_owned(),
                '=' => "%3D".to_owned(),
                other => other.to_string(),
            })
            .collect();
        format!(
            "{}?sv={version}&se={}&sr=c&sp={permissions}&spr=https&sig={signature}",
            self.container_url(container),
            expiry.replace(':', "%3A"),
        )
    }

    /// A copy of what Azurite printed, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A well-formed Entra ID access token for storage. Azurite's `--oauth basic` checks its shape,
/// issuer, audience and times, not its signature.
pub fn azurite_token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
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

/// A CA and a certificate it signed for 127.0.0.1 and localhost: the CA's PEM, the
/// certificate's PEM and its key's PEM.
fn certificates() -> Result<(String, String, String), rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ferry azurite test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let server_key = KeyPair::generate()?;
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server = server_params.signed_by(&server_key, &issuer)?;
    Ok((ca.pem(), server.pem(), server_key.serialize_pem()))
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
