//! A simulated AKS API server: a real HTTPS listener on a loopback address whose `/readyz`
//! answers while the cluster is up, and refuses or hangs when a fault says it is down. It serves
//! the cluster's Services too (`kubernetes`), refused like everything else while it is down.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::SimulatorError;
use crate::faults::ApiServerDownMode;
use crate::kubernetes::{self, SharedServices};
use crate::tls::CertificateAuthority;

const UP: u8 = 0;
const DOWN_REFUSE: u8 = 1;
const DOWN_HANG: u8 = 2;

/// One cluster's API server endpoint.
#[derive(Debug)]
pub struct ReadyzServer {
    address: SocketAddr,
    state: Arc<AtomicU8>,
    stop: tokio::sync::watch::Sender<bool>,
    services: SharedServices,
}

impl ReadyzServer {
    /// Listens on `ip:port`, or on a free port of `ip` when `port` is taken or not allowed.
    pub fn start(
        ip: Ipv4Addr,
        port: u16,
        authority: &CertificateAuthority,
    ) -> Result<Self, SimulatorError> {
        let listener = std::net::TcpListener::bind((ip, port))
            .or_else(|_| std::net::TcpListener::bind((ip, 0)))
            .map_err(|error| SimulatorError::Bind {
                address: format!("{ip}:{port}"),
                reason: error.to_string(),
            })?;
        let address = listener
            .local_addr()
            .map_err(|error| SimulatorError::Bind {
                address: format!("{ip}:{port}"),
                reason: error.to_string(),
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|error| SimulatorError::Bind {
                address: address.to_string(),
                reason: error.to_string(),
            })?;
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|error| SimulatorError::Bind {
                address: address.to_string(),
                reason: error.to_string(),
            })?;
        let tls = authority.server_config(&[IpAddr::V4(ip).to_string()])?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let state = Arc::new(AtomicU8::new(UP));
        let services = SharedServices::default();
        let loop_services = services.clone();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let loop_state = state.clone();
        let mut loop_stopped = stopped.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = loop_stopped.wait_for(|stopped| *stopped) => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                match loop_state.load(Ordering::SeqCst) {
                    DOWN_REFUSE => drop(stream),
                    DOWN_HANG => {
                        let mut hang_stopped = stopped.clone();
                        tokio::spawn(async move {
                            // Holding the socket open without a byte is what a dead API server
                            // behind a load balancer looks like to a prober.
                            let _held = stream;
                            let _ = hang_stopped.wait_for(|stopped| *stopped).await;
                        });
                    }
                    _ => {
                        let acceptor = acceptor.clone();
                        let connection_state = loop_state.clone();
                        let connection_stopped = stopped.clone();
                        let connection_services = loop_services.clone();
                        tokio::spawn(async move {
                            let Ok(tls_stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let service = hyper::service::service_fn(
                                move |request: hyper::Request<hyper::body::Incoming>| {
                                    let state = connection_state.clone();
                                    let stopped = connection_stopped.clone();
                                    let services = connection_services.clone();
                                    answer_probe(request, state, stopped, services)
                                },
                            );
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(tls_stream), service)
                                .await;
                        });
                    }
                }
            }
        });
        Ok(ReadyzServer {
            address,
            state,
            stop,
            services,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What ARM reports as the cluster's `fqdn`: the address, with its port unless it is 443.
    pub fn fqdn(&self) -> String {
        if self.address.port() == 443 {
            self.address.ip().to_string()
        } else {
            self.address.to_string()
        }
    }

    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::SeqCst) == UP
    }

    pub fn set_down(&self, mode: Option<ApiServerDownMode>) {
        let value = match mode {
            None => UP,
            Some(ApiServerDownMode::Refuse) => DOWN_REFUSE,
            Some(ApiServerDownMode::Hang) => DOWN_HANG,
        };
        self.state.store(value, Ordering::SeqCst);
    }

    /// The cluster's Services, shared with its cloud controller.
    pub(crate) fn services(&self) -> SharedServices {
        self.services.clone()
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Answers one request; a kept-alive connection sees an outage too: `refuse` closes it,
/// `hang` never answers.
async fn answer_probe(
    request: hyper::Request<hyper::body::Incoming>,
    state: Arc<AtomicU8>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    services: SharedServices,
) -> Result<hyper::Response<Full<Bytes>>, std::io::Error> {
    match state.load(Ordering::SeqCst) {
        DOWN_REFUSE => return Err(std::io::Error::other("api server is down")),
        DOWN_HANG => {
            let _ = stopped.wait_for(|stopped| *stopped).await;
            return Err(std::io::Error::other("api server stopped"));
        }
        _ => {}
    }
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if let "/readyz" | "/livez" | "/healthz" = path.as_str() {
        return text_response(200, "ok");
    }
    let body = request
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes().to_vec())
        .unwrap_or_default();
    // A request that arrived while the server was up but is answered after it went down is
    // not answered.
    if state.load(Ordering::SeqCst) != UP {
        return Err(std::io::Error::other("api server is down"));
    }
    match kubernetes::answer(&services, &method, &path, authorization.as_deref(), &body) {
        Some(answer) => hyper::Response::builder()
            .status(answer.status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                serde_json::to_vec(&answer.body).unwrap_or_default(),
            )))
            .map_err(std::io::Error::other),
        None => text_response(404, "not found"),
    }
}

fn text_response(
    status: u16,
    text: &'static str,
) -> Result<hyper::Response<Full<Bytes>>, std::io::Error> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(text.as_bytes())))
        .map_err(std::io::Error::other)
}
