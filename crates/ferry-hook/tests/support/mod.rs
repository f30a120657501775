//! Test harness for hooks and checks: an apply context that records progress, and local
//! servers on 127.0.0.1 (HTTP with chosen statuses, HTTPS with certificates from a test CA,
//! a DNS server whose answer changes) that stop when the test ends.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ferry_core::{
    Action, ApplyContext, Attributes, InstanceAddress, Provider, ReadContext, ResourceSpec, Step,
    StepError, StepId, StepOutcome,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// A step for `KIND.NAME` with `inputs`.
pub fn step(address: &str, action: Action, inputs: serde_json::Value) -> Step {
    let address: InstanceAddress = address.parse().unwrap();
    Step {
        id: StepId::new(&address, action),
        address,
        action,
        reason: "test".to_owned(),
        after: Vec::new(),
        estimate_seconds: 1,
        changes: Default::default(),
        inputs: serde_json::from_value(inputs).unwrap(),
        warning: None,
    }
}

/// Applies `step` and returns its result with the progress lines it printed.
pub async fn apply(
    provider: &dyn Provider,
    step: &Step,
) -> (Result<StepOutcome, StepError>, Vec<String>) {
    let lines = Mutex::new(Vec::new());
    let progress = |line: String| lines.lock().unwrap().push(line);
    let outputs = |_: &InstanceAddress| None;
    let record = |_: String| {};
    let result = provider
        .apply(
            step,
            ApplyContext {
                inputs: &step.inputs,
                outputs: &outputs,
                progress: &progress,
                resume_token: None,
                record_resume_token: &record,
            },
        )
        .await;
    let lines = lines.into_inner().unwrap();
    (result, lines)
}

/// Reads `address` with `fields` and what the state remembers.
pub async fn read(
    provider: &dyn Provider,
    address: &str,
    fields: serde_json::Value,
    remembered: Option<&Attributes>,
) -> ferry_core::Observation {
    let instance: InstanceAddress = address.parse().unwrap();
    let spec = ResourceSpec::new(instance.address.clone());
    let fields: Attributes = serde_json::from_value(fields).unwrap();
    provider
        .read(ReadContext {
            spec: &spec,
            instance: &instance,
            fields: &fields,
            remembered,
            outputs: &|_| None,
        })
        .await
}

/// A server task that is stopped when the handle is dropped.
#[derive(Debug)]
pub struct Server {
    pub address: SocketAddr,
    task: JoinHandle<()>,
    pub requests: Arc<AtomicUsize>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub fn port(&self) -> u16 {
        self.address.port()
    }
}

fn response(status: u16) -> Vec<u8> {
    format!("HTTP/1.1 {status} Test\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        .into_bytes()
}

/// Reads a request's head, so that the client sees its answer rather than a reset.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
    }
}

/// An HTTP server answering the statuses in turn, then the last one forever.
pub async fn http_server(statuses: Vec<u16>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let index = counter.fetch_add(1, Ordering::SeqCst);
            let status = statuses[index.min(statuses.len() - 1)];
            read_head(&mut stream).await;
            let _ = stream.write_all(&response(status)).await;
            let _ = stream.shutdown().await;
        }
    });
    Server {
        address,
        task,
        requests,
    }
}

/// A test certificate authority and the PEM file of its certificate.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub folder: tempfile::TempDir,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

/// When a leaf certificate is valid.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    /// The rcgen default: 1975 to 4096.
    Long,
    Expired,
    /// Valid until this many days from now.
    DaysFromNow(u64),
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ferry test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("ca.pem"), issuer.pem()).unwrap();
        TestCa { issuer, folder }
    }

    pub fn ca_file(&self) -> std::path::PathBuf {
        self.folder.path().join("ca.pem")
    }

    /// A leaf certificate for `names` and its key, in DER.
    pub fn leaf(
        &self,
        names: &[&str],
        validity: Validity,
    ) -> (
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        match validity {
            Validity::Long => {}
            Validity::Expired => {
                params.not_before = rcgen::date_time_ymd(2019, 1, 1);
                params.not_after = rcgen::date_time_ymd(2020, 1, 1);
            }
            Validity::DaysFromNow(days) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                let today = ferry_hook::check::format_date(
                    rustls::pki_types::UnixTime::since_unix_epoch(now),
                );
                let parts: Vec<i32> = today.split('-').map(|part| part.parse().unwrap()).collect();
                let midnight = rcgen::date_time_ymd(parts[0], parts[1] as u8, parts[2] as u8);
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = midnight + std::time::Duration::from_secs(days * 86_400);
            }
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &*self.issuer).unwrap();
        (
            certificate.der().clone(),
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }
}

/// An HTTPS server presenting `certificate` and answering 200 to every request.
pub async fn https_server(
    certificate: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Server {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Clients that reject the certificate end the handshake; that is expected.
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    read_head(&mut tls).await;
                    let _ = tls.write_all(&response(200)).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    Server {
        address,
        task,
        requests,
    }
}

/// A DNS server (UDP) that answers A queries with `before` for the first `switch_after`
/// queries, and with `after` from then on: a name that changes during a wait.
pub async fn changing_dns_server(before: &str, after: &str, switch_after: usize) -> Server {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let before: std::net::Ipv4Addr = before.parse().unwrap();
    let after: std::net::Ipv4Addr = after.parse().unwrap();
    let task = tokio::spawn(async move {
        let mut buffer = vec![0u8; 2048];
        loop {
            let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buffer[..length]) else {
                continue;
            };
            let index = counter.fetch_add(1, Ordering::SeqCst);
            let value = if index < switch_after { before } else { after };
            let mut answer = query.clone();
            answer.metadata.message_type = MessageType::Response;
            answer.metadata.authoritative = true;
            if let Some(question) = query.queries.first() {
                answer.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(value)),
                ));
            }
            let _ = socket.send_to(&answer.to_vec().unwrap(), peer).await;
        }
    });
    Server {
        address,
        task,
        requests,
    }
}
