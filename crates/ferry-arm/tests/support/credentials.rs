//! What the credential tests run the chain against, besides the simulator's token endpoint:
//! App Service's managed identity endpoint on loopback, fake `az` programs, and a way to run
//! a test again in a child process whose environment holds the managed identity's variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The variable that marks the child run of a test.
const CHILD_VARIABLE: &str = "FERRY_ARM_CREDENTIAL_TEST_CHILD";

/// The variables `azure_identity`'s managed identity reads to pick its source; a child starts
/// with only those the test gives it.
const MANAGED_IDENTITY_VARIABLES: [&str; 6] = [
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
];

/// True in the child run of a test, started by [`run_in_child`].
pub fn in_child() -> bool {
    std::env::var_os(CHILD_VARIABLE).is_some()
}

/// Runs the test named `test` of this test binary again, alone, in a child process with
/// `environment` added to its variables, and fails unless it ran and passed.
///
/// `azure_identity` 1.0 reads the managed identity's variables (`IDENTITY_ENDPOINT`, ...) from
/// the process environment only, and changing a running process's environment is `unsafe` (it
/// races with every other thread): a child process gets them from its start instead.
pub async fn run_in_child(test: &str, environment: &[(&str, String)]) {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VARIABLE, "1")
        .kill_on_drop(true);
    for name in MANAGED_IDENTITY_VARIABLES {
        command.env_remove(name);
    }
    for (name, value) in environment {
        command.env(name, value);
    }
    let output = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(" 1 passed"),
        "the child run of {test} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

/// How the App Service endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityAnswer {
    /// A token, in App Service's shape (`expires_on` a string of Unix seconds).
    Token,
    /// 400, as App Service answers for an identity that is not assigned to the app.
    NotAssigned,
}

/// One request the App Service endpoint saw.
#[derive(Debug, Clone)]
pub struct IdentityRequest {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
}

/// App Service's (and Container Apps') managed identity endpoint: plain HTTP on loopback,
/// `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...` with the secret
/// `X-IDENTITY-HEADER`.
#[derive(Debug)]
pub struct AppServiceIdentity {
    pub endpoint: String,
    pub header: String,
    requests: Arc<Mutex<Vec<IdentityRequest>>>,
    server: tokio::task::JoinHandle<()>,
}

pub const IDENTITY_TOKEN: &str = "ferry-test-managed-identity-token";

impl AppServiceIdentity {
    pub async fn start(answer: IdentityAnswer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/msi/token", listener.local_addr().unwrap());
        let header = "ferry-test-identity-header-secret".to_owned();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut received = Vec::new();
                let mut buffer = [0u8; 4096];
                while !received.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => received.extend_from_slice(&buffer[..read]),
                    }
                }
                let request = parse_request(&String::from_utf8_lossy(&received));
                let resource = request.query.get("resource").cloned().unwrap_or_default();
                seen.lock().unwrap().push(request);
                let (status, body) = match answer {
                    IdentityAnswer::Token => (
                        "200 OK",
                        serde_json::json!({
                            "access_token": IDENTITY_TOKEN,
                            "expires_on": "4102444800",
                            "resource": resource,
                            "token_type": "Bearer",
                        })
                        .to_string(),
                    ),
                    IdentityAnswer::NotAssigned => (
                        "400 Bad Request",
                        serde_json::json!({
                            "statusCode": 400,
                            "message": "No managed identity endpoint found.",
                        })
                        .to_string(),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        AppServiceIdentity {
            endpoint,
            header,
            requests,
            server,
        }
    }

    /// The variables App Service sets for the app.
    pub fn variables(&self) -> Vec<(&'static str, String)> {
        vec![
            ("IDENTITY_ENDPOINT", self.endpoint.clone()),
            ("IDENTITY_HEADER", self.header.clone()),
        ]
    }

    pub fn requests(&self) -> Vec<IdentityRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for AppServiceIdentity {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn parse_request(text: &str) -> IdentityRequest {
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let target = request_line.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    IdentityRequest {
        method,
        path: path.to_owned(),
        query: url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        headers,
    }
}

/// The token the fake `az` prints.
pub const CLI_TOKEN: &str = "ferry-test-azure-cli-token";

/// A folder to put first on `PATH`, holding an `az` that behaves one way. The folder holds
/// nothing else, so a shell with this `PATH` finds no other program: the scripts use builtins
/// only.
#[derive(Debug)]
pub struct FakeAz {
    folder: tempfile::TempDir,
}

impl FakeAz {
    /// `az account get-access-token -o json` as Azure CLI 2.54 and later prints it.
    pub fn logged_in() -> Self {
        Self::with_script(&format!(
            r#"printf '%s\n' '{{' '  "accessToken": "{CLI_TOKEN}",' '  "expiresOn": "2100-01-01 00:00:00.000000",' '  "expires_on": 4102444800,' '  "subscription": "00000000-0000-0000-0000-000000000001",' '  "tenant": "00000000-0000-0000-0000-000000000000",' '  "tokenType": "Bearer"' '}}'"#
        ))
    }

    /// What `az` says when nobody ran `az login`.
    pub fn not_logged_in() -> Self {
        Self::with_script("echo \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1")
    }

    /// No `az` at all: the folder is empty.
    pub fn missing() -> Self {
        FakeAz {
            folder: tempfile::tempdir().unwrap(),
        }
    }

    fn with_script(body: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let folder = tempfile::tempdir().unwrap();
        let script = folder.path().join("az");
        std::fs::write(
            &script,
            format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"${{0%/*}}/arguments\"\n{body}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeAz { folder }
    }

    /// The `PATH` to run with: this folder only.
    pub fn path(&self) -> String {
        self.folder.path().display().to_string()
    }

    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// The arguments `az` was last run with, one per element.
    pub fn arguments(&self) -> Option<Vec<String>> {
        let recorded: PathBuf = self.folder.path().join("arguments");
        let text = std::fs::read_to_string(recorded).ok()?;
        Some(text.lines().map(str::to_owned).collect())
    }
}
