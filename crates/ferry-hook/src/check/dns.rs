//! DNS checks: the answer of one server (such as a zone's primary) for one name, compared as
//! a set with the expected values. Asked over UDP, and again over TCP when the answer is
//! truncated, as resolvers do.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

fn server_address(server: &str) -> Result<SocketAddr, String> {
    server
        .parse::<SocketAddr>()
        .or_else(|_| {
            server
                .parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("server `{server}` is not address:port, such as 192.0.2.53:53"))
}

async fn over_udp(server: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (Ipv6Addr::LOCALHOST, 0).into()
    };
    // Bind to any local address only when the server is not on loopback.
    let local = if server.ip().is_loopback() {
        local
    } else if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(request).await?;
    let mut buffer = vec![0; 4096];
    let length = socket.recv(&mut buffer).await?;
    buffer.truncate(length);
    Ok(buffer)
}

async fn over_tcp(server: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    let length = u16::try_from(request.len()).map_err(std::io::Error::other)?;
    stream.write_all(&length.to_be_bytes()).await?;
    stream.write_all(request).await?;
    let length = stream.read_u16().await?;
    let mut answer = vec![0; usize::from(length)];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

fn value_text(data: &RData) -> Option<String> {
    match data {
        RData::A(address) => Some(address.0.to_string()),
        RData::AAAA(address) => Some(address.0.to_string()),
        RData::CNAME(target) => Some(
            target
                .0
                .to_ascii()
                .trim_end_matches('.')
                .to_ascii_lowercase(),
        ),
        RData::NS(target) => Some(
            target
                .0
                .to_ascii()
                .trim_end_matches('.')
                .to_ascii_lowercase(),
        ),
        RData::TXT(text) => Some(
            text.txt_data
                .iter()
                .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
                .collect(),
        ),
        other => Some(other.to_string()),
    }
}

/// A value as compared: addresses by meaning, names without case or trailing dot.
fn canonical(value: &str) -> String {
    let value = value.trim();
    if let Ok(address) = value.parse::<std::net::IpAddr>() {
        return address.to_string();
    }
    value.trim_end_matches('.').to_ascii_lowercase()
}

pub async fn probe(
    host: &str,
    server: &str,
    record_type: &str,
    expect: &[String],
) -> Result<String, String> {
    let address = server_address(server)?;
    let wire_type: RecordType = record_type
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| format!("`{record_type}` is not a DNS record type"))?;
    let name = Name::from_ascii(format!("{}.", host.trim_end_matches('.')))
        .map_err(|error| format!("`{host}` is not a DNS name: {error}"))?;
    let mut message = Message::query();
    message.add_query(Query::query(name.clone(), wire_type));
    let request = message.to_vec().map_err(|error| error.to_string())?;
    let exchange = async {
        let answer = over_udp(address, &request).await?;
        match Message::from_vec(&answer) {
            Ok(decoded) if decoded.metadata.truncation => over_tcp(address, &request).await,
            _ => Ok(answer),
        }
    };
    let answer = match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => return Err(format!("{server} did not answer: {error}")),
        Err(_) => {
            return Err(format!(
                "{server} did not answer within {}s",
                ANSWER_TIMEOUT.as_secs()
            ));
        }
    };
    let answer = Message::from_vec(&answer)
        .map_err(|error| format!("{server} sent an answer that cannot be read: {error}"))?;
    if answer.metadata.id != message.metadata.id {
        return Err(format!("{server} answered another question"));
    }
    let shown_type = wire_type.to_string();
    let mut seen: Vec<String> = match answer.metadata.response_code {
        ResponseCode::NoError => answer
            .answers
            .iter()
            .filter(|record| record.record_type() == wire_type)
            .filter(|record| record.name.to_lowercase() == name.to_lowercase())
            .filter_map(|record| value_text(&record.data))
            .collect(),
        ResponseCode::NXDomain => {
            return Err(format!(
                "{server} says {host} does not exist (NXDOMAIN); expected {}",
                expect.join(", ")
            ));
        }
        code => return Err(format!("{server} answered {code} for {host} {shown_type}")),
    };
    let mut wanted: Vec<String> = expect.iter().map(|value| canonical(value)).collect();
    seen = seen.iter().map(|value| canonical(value)).collect();
    seen.sort();
    seen.dedup();
    wanted.sort();
    wanted.dedup();
    if seen == wanted {
        Ok(format!(
            "{server} answers {host} {shown_type} {}",
            seen.join(", ")
        ))
    } else if seen.is_empty() {
        Err(format!(
            "{server} has no {shown_type} record for {host}; expected {}",
            wanted.join(", ")
        ))
    } else {
        Err(format!(
            "{server} answers {host} {shown_type} {}; expected {}",
            seen.join(", "),
            wanted.join(", ")
        ))
    }
}
