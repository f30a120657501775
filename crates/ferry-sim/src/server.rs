//! The HTTPS front of the simulator: TLS, HTTP/1.1, the token endpoint, the control API,
//! latency and faults, then ARM requests handed to the world.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::faults::Fault;
use crate::world::{SharedWorld, SimRequest, SimResponse, World};

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    world: SharedWorld,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let acceptor = acceptor.clone();
        let world = world.clone();
        let connection_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(tls_stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request| {
                let world = world.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(world, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls_stream), service);
            let mut connection_shutdown = connection_shutdown;
            tokio::select! {
                _ = connection => {}
                _ = connection_shutdown.wait_for(|stopped| *stopped) => {}
            }
        });
    }
}

fn lock(world: &SharedWorld) -> std::sync::MutexGuard<'_, World> {
    world
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn answer(
    world: SharedWorld,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let request = SimRequest {
        method,
        path,
        query,
        headers,
        body,
    };
    let response = dispatch(&world, &request).await;
    let mut builder = hyper::Response::builder().status(response.status);
    builder = builder.header("x-ms-request-id", request_id());
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(response.body)))
        .unwrap_or_else(|_| {
            hyper::Response::new(Full::new(Bytes::from_static(b"invalid response header")))
        })
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let value = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{value:08x}-5111-4000-8000-{value:012x}")
}

async fn dispatch(world: &SharedWorld, request: &SimRequest) -> SimResponse {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    if request.method == "POST"
        && segments.len() == 4
        && segments[1] == "oauth2"
        && segments[3] == "token"
    {
        return issue_token(world, request);
    }
    if segments.first() == Some(&"ferry-sim") {
        return control(world, request, &segments[1..]);
    }
    let latency = lock(world).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (response, operation) = {
        let mut world = lock(world);
        if let Some(fault) = world.request_fault(request) {
            return fault;
        }
        match request.header("authorization") {
            Some(value) if value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer ") => {}
            _ => {
                return SimResponse::error(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing or not a bearer token.",
                );
            }
        }
        world.handle(request)
    };
    if let Some((operation_id, after)) = operation {
        schedule_completion(world.clone(), operation_id, after);
    }
    response
}

fn schedule_completion(world: SharedWorld, operation_id: String, after: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        lock(&world).complete_operation(&operation_id);
    });
}

fn issue_token(world: &SharedWorld, request: &SimRequest) -> SimResponse {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    if field("grant_type").is_none() || field("client_id").is_none() {
        return SimResponse::json(
            400,
            &json!({"error": "invalid_request", "error_description": "grant_type and client_id are required"}),
        );
    }
    let mut world = lock(world);
    world.tokens_issued += 1;
    let token = format!("ferry-sim-token-{}", world.tokens_issued);
    SimResponse::json(
        200,
        &json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
    )
}

fn control(world: &SharedWorld, request: &SimRequest, segments: &[&str]) -> SimResponse {
    match (request.method.as_str(), segments) {
        ("POST", ["faults"]) => match serde_json::from_slice::<Fault>(&request.body) {
            Ok(fault) => {
                lock(world).add_fault(fault);
                SimResponse::empty(204)
            }
            Err(error) => SimResponse::error(
                400,
                "InvalidFault",
                format!("the fault is not valid: {error}"),
            ),
        },
        ("DELETE", ["faults"]) => {
            lock(world).clear_faults();
            SimResponse::empty(204)
        }
        ("PUT", ["latency"]) => {
            let milliseconds = serde_json::from_slice::<serde_json::Value>(&request.body)
                .ok()
                .and_then(|value| {
                    value
                        .get("milliseconds")
                        .and_then(serde_json::Value::as_u64)
                });
            match milliseconds {
                Some(milliseconds) => {
                    lock(world).latency = Duration::from_millis(milliseconds);
                    SimResponse::empty(204)
                }
                None => SimResponse::error(400, "InvalidLatency", "send {\"milliseconds\": N}"),
            }
        }
        ("POST", ["seed"]) => {
            let parsed = serde_json::from_slice::<crate::SeededResource>(&request.body);
            match parsed {
                Ok(resource) => match lock(world).seed(&resource.id, resource.body) {
                    Ok(()) => SimResponse::empty(204),
                    Err(reason) => SimResponse::error(400, "SeedFailed", reason),
                },
                Err(error) => SimResponse::error(
                    400,
                    "InvalidSeed",
                    format!("send {{\"id\", \"body\"}}: {error}"),
                ),
            }
        }
        ("GET", ["state"]) => SimResponse::json(200, &lock(world).dump()),
        _ => SimResponse::error(
            404,
            "UnknownControlRoute",
            format!("no control route {} {}", request.method, request.path),
        ),
    }
}
