//! The HTTPS front of the simulator: TLS, HTTP/1.1, Entra ID's token endpoint, the control
//! API, latency and faults, then ARM requests handed to the world.

use std::sync::{Arc, Mutex};
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
    tokens: TokenLog,
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
        let tokens = tokens.clone();
        let connection_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(tls_stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request| {
                let world = world.clone();
                let tokens = tokens.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(world, tokens, request).await) }
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

pub(crate) fn lock(world: &SharedWorld) -> std::sync::MutexGuard<'_, World> {
    world
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn answer(
    world: SharedWorld,
    tokens: TokenLog,
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
    let response = dispatch(&world, &tokens, &request).await;
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

async fn dispatch(world: &SharedWorld, tokens: &TokenLog, request: &SimRequest) -> SimResponse {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    if request.method == "POST"
        && segments.len() == 4
        && segments[1] == "oauth2"
        && segments[3] == "token"
    {
        return issue_token(world, tokens, segments[0], request);
    }
    if segments.first() == Some(&"ferry-sim") {
        return control(world, request, &segments[1..]);
    }
    let response = answer_arm(world, request).await;
    lock(world).count_request(request, &response);
    response
}

/// An ARM request: latency, faults, authentication, then the world.
async fn answer_arm(world: &SharedWorld, request: &SimRequest) -> SimResponse {
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

pub(crate) fn schedule_completion(world: SharedWorld, operation_id: String, after: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        lock(&world).complete_operation(&operation_id);
    });
}

/// The tenant of the one application the simulated Entra ID knows (any tenant is accepted).
pub const TENANT_ID: &str = "00000000-0000-0000-0000-000000000000";
/// The application's client id.
pub const CLIENT_ID: &str = "ferry-simulator-client";
/// Its client secret: any other is refused, as Entra ID refuses a wrong one.
pub const CLIENT_SECRET: &str = "ferry-simulator-secret";
/// The one federated token (workload identity's client assertion) its federated credential
/// accepts. Entra ID checks a signed JWT's issuer and subject; the simulator compares the text.
pub const FEDERATED_TOKEN: &str = "ferry-simulator-federated-token";

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What the token endpoint was asked, one entry per request. It never holds a secret or an
/// assertion, only which of them the client sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRequest {
    /// The tenant in the path, `/{tenant}/oauth2/v2.0/token`.
    pub tenant: String,
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub proof: ClientProof,
    pub scope: Option<String>,
    /// `None` when a token was issued, else the AADSTS code it was refused with.
    pub refused: Option<String>,
}

/// How a client proved who it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum ClientProof {
    /// `client_secret` (a service principal's secret).
    ClientSecret,
    /// `client_assertion` with its `client_assertion_type` (workload identity's federated token).
    ClientAssertion { assertion_type: Option<String> },
    /// Neither.
    Nothing,
}

pub(crate) type TokenLog = Arc<Mutex<Vec<TokenRequest>>>;

/// Entra ID's v2 token endpoint for the client credentials grant, with a secret or with a
/// client assertion, answering and refusing in Entra's shapes.
fn issue_token(
    world: &SharedWorld,
    tokens: &TokenLog,
    tenant: &str,
    request: &SimRequest,
) -> SimResponse {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let (secret, assertion) = (field("client_secret"), field("client_assertion"));
    let mut record = TokenRequest {
        tenant: tenant.to_owned(),
        grant_type: field("grant_type"),
        client_id: field("client_id"),
        proof: match (&secret, &assertion) {
            (Some(_), _) => ClientProof::ClientSecret,
            (None, Some(_)) => ClientProof::ClientAssertion {
                assertion_type: field("client_assertion_type"),
            },
            (None, None) => ClientProof::Nothing,
        },
        scope: field("scope"),
        refused: None,
    };
    let verdict = judge_token_request(&record, secret.as_deref(), assertion.as_deref());
    let response = match verdict {
        Ok(()) => {
            let mut world = lock(world);
            world.tokens_issued += 1;
            let token = format!("ferry-sim-token-{}", world.tokens_issued);
            SimResponse::json(
                200,
                &json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
            )
        }
        Err(refusal) => {
            record.refused = Some(format!("AADSTS{}", refusal.code));
            entra_error(&refusal)
        }
    };
    tokens
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(record);
    response
}

struct Refusal {
    status: u16,
    error: &'static str,
    code: u32,
    description: String,
}

fn refuse(status: u16, error: &'static str, code: u32, description: impl Into<String>) -> Refusal {
    Refusal {
        status,
        error,
        code,
        description: description.into(),
    }
}

/// Entra ID's checks, in its order: the request's shape, the application, then its proof.
fn judge_token_request(
    request: &TokenRequest,
    secret: Option<&str>,
    assertion: Option<&str>,
) -> Result<(), Refusal> {
    let Some(grant_type) = &request.grant_type else {
        return Err(refuse(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        ));
    };
    if grant_type != "client_credentials" {
        return Err(refuse(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        ));
    }
    let Some(client_id) = &request.client_id else {
        return Err(refuse(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        ));
    };
    match &request.scope {
        None => {
            return Err(refuse(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            ));
        }
        Some(scope) if !scope.ends_with("/.default") => {
            return Err(refuse(
                400,
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            ));
        }
        Some(_) => {}
    }
    if client_id != CLIENT_ID {
        return Err(refuse(
            400,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                request.tenant
            ),
        ));
    }
    match (secret, assertion) {
        (Some(secret), _) if secret == CLIENT_SECRET => Ok(()),
        (Some(_), _) => Err(refuse(
            401,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        )),
        (None, Some(assertion)) => {
            let assertion_type = match &request.proof {
                ClientProof::ClientAssertion { assertion_type } => assertion_type.as_deref(),
                _ => None,
            };
            if assertion_type != Some(JWT_BEARER) {
                Err(refuse(
                    400,
                    "invalid_request",
                    50027,
                    format!("Invalid JWT token: client_assertion_type must be {JWT_BEARER}."),
                ))
            } else if assertion == FEDERATED_TOKEN {
                Ok(())
            } else {
                Err(refuse(
                    400,
                    "invalid_client",
                    70021,
                    "No matching federated identity record found for presented assertion.",
                ))
            }
        }
        (None, None) => Err(refuse(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )),
    }
}

/// Entra ID's error body: `error`, `error_description` (starting with the AADSTS code, then
/// trace lines), `error_codes` and the ids support asks for.
fn entra_error(refusal: &Refusal) -> SimResponse {
    let trace_id = request_id();
    let correlation_id = request_id();
    SimResponse::json(
        refusal.status,
        &json!({
            "error": refusal.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}",
                refusal.code, refusal.description
            ),
            "error_codes": [refusal.code],
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", refusal.code),
        }),
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
        ("PUT", ["throttling"]) => {
            let limits = match serde_json::from_slice::<serde_json::Value>(&request.body) {
                Ok(serde_json::Value::String(name)) if name == "azure" => {
                    Ok(crate::ArmThrottling::azure())
                }
                Ok(value) => {
                    serde_json::from_value::<crate::ArmThrottling>(value).map_err(|e| e.to_string())
                }
                Err(error) => Err(error.to_string()),
            };
            match limits {
                Ok(limits) => {
                    lock(world).set_throttling(Some(limits));
                    SimResponse::empty(204)
                }
                Err(error) => SimResponse::error(
                    400,
                    "InvalidThrottling",
                    format!(
                        "send \"azure\" or {{\"reads\": {{\"size\", \"refill_per_second\"}}, \"writes\": ..., \"deletes\": ...}}: {error}"
                    ),
                ),
            }
        }
        ("DELETE", ["throttling"]) => {
            lock(world).set_throttling(None);
            SimResponse::empty(204)
        }
        ("GET", ["state"]) => SimResponse::json(200, &lock(world).dump()),
        ("GET", ["stats"]) => {
            let stats = lock(world).request_stats();
            SimResponse::json(200, &json!(stats))
        }
        ("GET", ["refusals"]) => {
            let refusals = lock(world).refusal_counts();
            SimResponse::json(200, &json!(refusals))
        }
        ("DELETE", ["stats"]) => {
            lock(world).reset_request_stats();
            SimResponse::empty(204)
        }
        _ => SimResponse::error(
            404,
            "UnknownControlRoute",
            format!("no control route {} {}", request.method, request.path),
        ),
    }
}
