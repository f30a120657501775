//! HTTP(S) checks: a GET that must answer with the expected status. Redirects are not
//! followed: a check of `https://hub/` that answers 302 to a login page answers 302.

use std::path::Path;

use super::tls;

pub async fn probe(
    url: &str,
    expect_status: u16,
    ca_file: Option<&Path>,
) -> Result<String, String> {
    let mut config = tls::client_config(tls::roots(ca_file)?)?;
    // Only HTTP/1.1: reqwest is built without HTTP/2 here.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|error| format!("cannot set up an HTTP client: {error}"))?;
    let response = client.get(url).send().await.map_err(|error| {
        // reqwest's top-level message hides the cause (refused, certificate), which is the
        // part people need.
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    })?;
    let status = response.status().as_u16();
    if status == expect_status {
        Ok(format!("GET {url} answered {status}"))
    } else {
        Err(format!(
            "GET {url} answered {status}, expected {expect_status}"
        ))
    }
}
