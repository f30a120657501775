//! The RFC 2136 backend: reads a zone's record sets by asking its primary server directly, and
//! changes them with DNS UPDATE messages signed with TSIG (RFC 8945), over TCP.
//!
//! TCP rather than UDP: an update with several values and a signature can exceed 512 bytes,
//! and a TCP answer is never truncated, so there is one code path and no retry logic.
//!
//! The TSIG secret is read from the environment variable or file that the zone names, at the
//! moment an update is signed; it is never stored in the spec, and never printed: the key
//! bytes live only in hickory's signer.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ferry_core::{Attributes, Value};
use hickory_proto::op::{Message, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend::{BackendError, Change, DnsBackend, Precondition, Reading};
use crate::record::{RecordKey, RecordSet, RecordType};

/// How long one exchange with the server may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The TSIG fudge: how far apart ferry's and the server's clocks may be, in seconds (the
/// value `nsupdate` uses).
const TSIG_FUDGE: u16 = 300;

/// Where the TSIG secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `tsig_secret_env = "NAME"`: the base64 secret in this environment variable.
    Environment(String),
    /// `tsig_secret_file = "PATH"`: a file holding the base64 secret, or a BIND key file as
    /// `tsig-keygen` writes it.
    File(PathBuf),
}

impl SecretSource {
    fn describe(&self) -> String {
        match self {
            SecretSource::Environment(name) => format!("${name}"),
            SecretSource::File(path) => path.display().to_string(),
        }
    }
}

/// An RFC 2136 zone's settings, from `[zones."NAME"]` with `backend = "rfc2136"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc2136Config {
    /// The zone, normalized (lower-case, no trailing dot).
    pub zone: String,
    /// `server`: the primary, `address:port` (port 53 when left out).
    pub server: String,
    /// `tsig_key_name`
    pub key_name: String,
    /// `tsig_algorithm`: `hmac-sha256` (the default), `hmac-sha384` or `hmac-sha512`.
    pub algorithm: String,
    pub secret: SecretSource,
}

/// Why a zone's settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneConfigError {
    #[error("zone `{zone}` has no `{setting}`: add {setting} = \"...\" to [zones.\"{zone}\"]")]
    Missing { zone: String, setting: &'static str },
    #[error("zone `{zone}` has both tsig_secret_env and tsig_secret_file: keep one of them")]
    TwoSecretSources { zone: String },
    #[error(
        "zone `{zone}` needs a TSIG secret: add tsig_secret_env = \"NAME\" (an environment variable) or tsig_secret_file = \"PATH\"; never put the secret itself in the spec"
    )]
    NoSecretSource { zone: String },
    #[error(
        "zone `{zone}`: tsig_algorithm `{algorithm}` is not supported: use hmac-sha256, hmac-sha384 or hmac-sha512"
    )]
    Algorithm { zone: String, algorithm: String },
    #[error("zone `{zone}`: server `{server}` is not address:port, such as 192.0.2.53:53")]
    Server { zone: String, server: String },
    #[error(
        "zone `{zone}` has no Azure subscription: add subscription = \"...\" to [zones.\"{zone}\"] or to [deployment], or set AZURE_SUBSCRIPTION_ID"
    )]
    NoSubscription { zone: String },
}

impl Rfc2136Config {
    /// Reads a zone's settings. `root` is the spec's folder, against which a relative
    /// `tsig_secret_file` is found.
    pub fn from_attributes(
        zone: &str,
        settings: &Attributes,
        root: &Path,
    ) -> Result<Self, ZoneConfigError> {
        let text = |name: &str| settings.get(name).and_then(Value::as_str).map(str::trim);
        let missing = |setting| ZoneConfigError::Missing {
            zone: zone.to_owned(),
            setting,
        };
        let server = text("server").ok_or_else(|| missing("server"))?.to_owned();
        let server = if server.parse::<std::net::SocketAddr>().is_ok() {
            server
        } else if server.parse::<std::net::IpAddr>().is_ok() {
            format!("{server}:53")
        } else if server
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        {
            server
        } else if !server.is_empty() && !server.contains(':') && !server.contains(' ') {
            format!("{server}:53")
        } else {
            return Err(ZoneConfigError::Server {
                zone: zone.to_owned(),
                server,
            });
        };
        let key_name = text("tsig_key_name")
            .ok_or_else(|| missing("tsig_key_name"))?
            .to_owned();
        let algorithm = text("tsig_algorithm")
            .unwrap_or("hmac-sha256")
            .to_ascii_lowercase();
        tsig_algorithm(&algorithm).ok_or_else(|| ZoneConfigError::Algorithm {
            zone: zone.to_owned(),
            algorithm: algorithm.clone(),
        })?;
        let secret = match (text("tsig_secret_env"), text("tsig_secret_file")) {
            (Some(_), Some(_)) => {
                return Err(ZoneConfigError::TwoSecretSources {
                    zone: zone.to_owned(),
                });
            }
            (Some(name), None) => SecretSource::Environment(name.to_owned()),
            (None, Some(path)) => SecretSource::File(root.join(path)),
            (None, None) => {
                return Err(ZoneConfigError::NoSecretSource {
                    zone: zone.to_owned(),
                });
            }
        };
        Ok(Self {
            zone: crate::record::normalize_zone(zone),
            server,
            key_name,
            algorithm,
            secret,
        })
    }
}

fn tsig_algorithm(name: &str) -> Option<TsigAlgorithm> {
    match name.trim_end_matches('.') {
        "hmac-sha256" => Some(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Some(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Some(TsigAlgorithm::HmacSha512),
        _ => None,
    }
}

/// One zone on one RFC 2136 server.
#[derive(Debug, Clone)]
pub struct Rfc2136Backend {
    config: Rfc2136Config,
}

impl Rfc2136Backend {
    pub fn new(config: Rfc2136Config) -> Self {
        Self { config }
    }

    fn configuration_error(&self, message: String) -> BackendError {
        BackendError::Configuration {
            zone: self.config.zone.clone(),
            message,
        }
    }

    /// Builds the signer from the secret, which is read now and dropped with the signer.
    fn signer(&self) -> Result<TSigner, BackendError> {
        let encoded = match &self.config.secret {
            SecretSource::Environment(name) => std::env::var(name).map_err(|_| {
                self.configuration_error(format!(
                    "the TSIG secret is missing: set the environment variable {name} (tsig_secret_env) to the key's base64 secret"
                ))
            })?,
            SecretSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    self.configuration_error(format!(
                        "cannot read the TSIG secret file {} ({error}): check tsig_secret_file",
                        path.display()
                    ))
                })?;
                secret_from_key_file(&text)
            }
        };
        let key = data_encoding::BASE64
            .decode(encoded.trim().as_bytes())
            .map_err(|_| {
                self.configuration_error(format!(
                    "the TSIG secret in {} is not base64: use the secret that tsig-keygen printed",
                    self.config.secret.describe()
                ))
            })?;
        let algorithm = tsig_algorithm(&self.config.algorithm).ok_or_else(|| {
            self.configuration_error(format!(
                "tsig_algorithm `{}` is not supported",
                self.config.algorithm
            ))
        })?;
        let key_name = name(&self.config.key_name).map_err(|message| {
            self.configuration_error(format!("tsig_key_name is not a DNS name: {message}"))
        })?;
        TSigner::new(key, algorithm, key_name, TSIG_FUDGE).map_err(|error| {
            self.configuration_error(format!("cannot sign with this key: {error}"))
        })
    }

    fn unreachable(&self, message: impl Into<String>) -> BackendError {
        BackendError::Unreachable {
            server: self.config.server.clone(),
            message: message.into(),
        }
    }

    fn not_primary(&self, fqdn: &str, record_type: RecordType, problem: &str) -> BackendError {
        BackendError::NotPrimary {
            server: self.config.server.clone(),
            zone: self.config.zone.clone(),
            query: format!("{fqdn} {record_type}"),
            problem: problem.to_owned(),
        }
    }

    fn protocol(&self, message: impl Into<String>) -> BackendError {
        BackendError::Protocol {
            server: self.config.server.clone(),
            message: message.into(),
        }
    }

    /// Sends one message over TCP and returns the raw answer.
    async fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, BackendError> {
        let work = async {
            let mut stream = TcpStream::connect(&self.config.server).await?;
            let length = u16::try_from(request.len())
                .map_err(|_| std::io::Error::other("the message is too long"))?;
            let mut framed = Vec::with_capacity(request.len() + 2);
            framed.extend_from_slice(&length.to_be_bytes());
            framed.extend_from_slice(request);
            stream.write_all(&framed).await?;
            let length = stream.read_u16().await?;
            let mut answer = vec![0; usize::from(length)];
            stream.read_exact(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        match tokio::time::timeout(EXCHANGE_TIMEOUT, work).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(self.unreachable(error.to_string())),
            Err(_) => {
                Err(self.unreachable(format!("no answer within {}s", EXCHANGE_TIMEOUT.as_secs())))
            }
        }
    }

    /// Asks the primary for one record set, and checks that it answers with authority.
    async fn query(
        &self,
        fqdn: &str,
        record_type: RecordType,
    ) -> Result<Vec<Record>, BackendError> {
        let query_name = name(fqdn).map_err(|message| self.protocol(message))?;
        let mut message = Message::query();
        message.metadata.recursion_desired = false;
        message.add_query(Query::query(query_name.clone(), wire_type(record_type)));
        let request = message
            .to_vec()
            .map_err(|error| self.protocol(error.to_string()))?;
        let answer = self.exchange(&request).await?;
        let answer =
            Message::from_vec(&answer).map_err(|error| self.protocol(error.to_string()))?;
        match answer.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            ResponseCode::Refused | ResponseCode::NotAuth => {
                return Err(self.not_primary(fqdn, record_type, "refused the query"));
            }
            code => {
                return Err(self.protocol(format!(
                    "the query for {fqdn} {record_type} failed with {code}"
                )));
            }
        }
        if !answer.metadata.authoritative {
            return Err(self.not_primary(fqdn, record_type, "answered without authority"));
        }
        Ok(answer
            .answers
            .into_iter()
            .filter(|record| record.name.to_lowercase() == query_name.to_lowercase())
            .filter(|record| record.record_type() == wire_type(record_type))
            .collect())
    }

    /// Signs and sends one update, and turns the server's answer into ferry's errors.
    async fn update(&self, key: &RecordKey, mut message: Message) -> Result<(), BackendError> {
        let signer = self.signer()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let verifier = message
            .finalize(&signer, now)
            .map_err(|error| self.protocol(format!("cannot sign the update: {error}")))?;
        let request = message
            .to_vec()
            .map_err(|error| self.protocol(error.to_string()))?;
        let answer = self.exchange(&request).await?;
        let verified = verifier.map(|mut verifier| verifier.verify(&answer));
        let decoded =
            Message::from_vec(&answer).map_err(|error| self.protocol(error.to_string()))?;
        let tsig_error = decoded
            .signature()
            .and_then(|signature| signature.data.error);
        let unauthorized = |reason: String| BackendError::Unauthorized {
            server: self.config.server.clone(),
            zone: self.config.zone.clone(),
            reason,
            secret_source: self.config.secret.describe(),
        };
        if let Some(error) = tsig_error {
            return Err(unauthorized(format!("{error:?}").to_ascii_uppercase()));
        }
        let record = key.to_string();
        let refused = |reason: String| BackendError::Refused {
            server: self.config.server.clone(),
            record: record.clone(),
            reason,
        };
        match decoded.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::NotAuth => {
                return Err(unauthorized("NOTAUTH".to_owned()));
            }
            ResponseCode::Refused => {
                return Err(refused(format!(
                    "REFUSED: allow key `{}` to update zone `{}` in the server's update-policy or allow-update",
                    self.config.key_name, self.config.zone
                )));
            }
            code @ (ResponseCode::YXRRSet
            | ResponseCode::NXRRSet
            | ResponseCode::YXDomain
            | ResponseCode::NXDomain) => {
                return Err(BackendError::Conflict {
                    server: self.config.server.clone(),
                    record,
                    detail: format!(
                        "the update's prerequisite failed: {}",
                        format!("{code:?}").to_ascii_uppercase()
                    ),
                });
            }
            ResponseCode::NotZone => {
                return Err(refused(format!(
                    "NOTZONE: the name is not in zone `{}`",
                    self.config.zone
                )));
            }
            ResponseCode::ServFail => {
                return Err(self.unreachable("the server failed (SERVFAIL) while updating"));
            }
            code => return Err(refused(code.to_string())),
        }
        match verified {
            Some(Ok(_)) => Ok(()),
            Some(Err(error)) => Err(self.protocol(format!(
                "the answer's TSIG signature does not verify ({error}); the change may have been made: run `ferry plan` again"
            ))),
            None => Err(self.protocol("the update was not signed")),
        }
    }

    fn record(&self, fqdn: &str, ttl: u32, data: RData) -> Result<Record, BackendError> {
        let owner = name(fqdn).map_err(|message| self.protocol(message))?;
        Ok(Record::from_rdata(owner, ttl, data))
    }

    /// The UPDATE message skeleton for this zone.
    fn update_message(&self) -> Result<Message, BackendError> {
        let zone = name(&self.config.zone).map_err(|message| self.protocol(message))?;
        let mut message = Message::query();
        message.metadata.op_code = OpCode::Update;
        message.metadata.recursion_desired = false;
        let mut zone_query = Query::new();
        zone_query
            .set_name(zone)
            .set_query_class(DNSClass::IN)
            .set_query_type(hickory_proto::rr::RecordType::SOA);
        message.add_zone(zone_query);
        Ok(message)
    }
}

#[async_trait]
impl DnsBackend for Rfc2136Backend {
    fn describe(&self) -> String {
        format!("rfc2136 {}", self.config.server)
    }

    async fn read(&self, key: &RecordKey) -> Result<Reading, BackendError> {
        let records = self.query(&key.fqdn(), key.record_type).await?;
        let record_set = records.first().map(|first| RecordSet {
            ttl: first.ttl,
            values: records
                .iter()
                .filter_map(|record| value_text(&record.data))
                .collect(),
        });
        let markers = self.query(&key.marker_fqdn(), RecordType::Txt).await?;
        let mut owners: Vec<String> = markers
            .iter()
            .filter_map(|record| value_text(&record.data))
            .filter_map(|text| key.marker_owner(&text))
            .collect();
        owners.sort();
        owners.dedup();
        Ok(Reading {
            record_set,
            owners,
            version: None,
        })
    }

    async fn write(&self, key: &RecordKey, change: &Change) -> Result<(), BackendError> {
        let fqdn = key.fqdn();
        let marker = key.marker_fqdn();
        let wire = wire_type(key.record_type);
        let mut message = self.update_message()?;
        let precondition = match change {
            Change::Upsert { precondition, .. } | Change::Delete { precondition, .. } => {
                precondition
            }
        };
        if *precondition == Precondition::Absent {
            // RFC 2136 2.4.3, "RRset does not exist": class NONE, type, no data.
            let mut absent = self.record(&fqdn, 0, RData::Update0(wire))?;
            absent.dns_class = DNSClass::NONE;
            message.add_pre_requisite(absent);
        }
        // RFC 2136 2.5.2, "delete an RRset": class ANY, TTL 0, no data. Both an upsert and a
        // delete start with it, so that the set ends up holding exactly the spec's values.
        let mut delete_set = self.record(&fqdn, 0, RData::Update0(wire))?;
        delete_set.dns_class = DNSClass::ANY;
        message.add_update(delete_set);
        match change {
            Change::Upsert {
                record_set, owner, ..
            } => {
                for value in &record_set.values {
                    let data = rdata(key.record_type, value).map_err(|message| {
                        self.protocol(format!("{fqdn} {}: {message}", key.record_type))
                    })?;
                    message.add_update(self.record(&fqdn, record_set.ttl, data)?);
                }
                // Every other deployment's marker for this type goes (take-over), ours comes.
                // The strings of other owners are unknown here, so the marker set is rewritten
                // from what the server holds now.
                let current = self.query(&marker, RecordType::Txt).await?;
                for record in current {
                    if let Some(text) = value_text(&record.data)
                        && key.marker_owner(&text).is_some_and(|other| other != *owner)
                    {
                        let mut stale = self.record(&marker, 0, txt(&text))?;
                        stale.dns_class = DNSClass::NONE;
                        message.add_update(stale);
                    }
                }
                message.add_update(self.record(
                    &marker,
                    record_set.ttl,
                    txt(&key.marker_text(owner)),
                )?);
            }
            Change::Delete { owner, .. } => {
                // RFC 2136 2.5.4, "delete an RR from an RRset": class NONE, TTL 0.
                let mut ours = self.record(&marker, 0, txt(&key.marker_text(owner)))?;
                ours.dns_class = DNSClass::NONE;
                message.add_update(ours);
            }
        }
        self.update(key, message).await
    }
}

/// A fully qualified hickory name from text with or without the trailing dot.
fn name(text: &str) -> Result<Name, String> {
    let text = text.trim_end_matches('.');
    Name::from_ascii(format!("{text}.")).map_err(|error| format!("`{text}`: {error}"))
}

fn wire_type(record_type: RecordType) -> hickory_proto::rr::RecordType {
    match record_type {
        RecordType::A => hickory_proto::rr::RecordType::A,
        RecordType::Aaaa => hickory_proto::rr::RecordType::AAAA,
        RecordType::Cname => hickory_proto::rr::RecordType::CNAME,
        RecordType::Txt => hickory_proto::rr::RecordType::TXT,
    }
}

/// A TXT value, split into the 255-byte character strings the wire format needs.
fn txt(text: &str) -> RData {
    let bytes = text.as_bytes();
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![bytes]
    } else {
        bytes.chunks(255).collect()
    };
    RData::TXT(TXT::from_bytes(chunks))
}

fn rdata(record_type: RecordType, value: &str) -> Result<RData, String> {
    match record_type {
        RecordType::A => value
            .trim()
            .parse()
            .map(|address| RData::A(A(address)))
            .map_err(|_| format!("`{value}` is not an IPv4 address")),
        RecordType::Aaaa => value
            .trim()
            .parse()
            .map(|address| RData::AAAA(AAAA(address)))
            .map_err(|_| format!("`{value}` is not an IPv6 address")),
        RecordType::Cname => name(value.trim()).map(|target| RData::CNAME(CNAME(target))),
        RecordType::Txt => Ok(txt(value)),
    }
}

/// A record's value in the spec's notation.
fn value_text(data: &RData) -> Option<String> {
    match data {
        RData::A(A(address)) => Some(address.to_string()),
        RData::AAAA(AAAA(address)) => Some(address.to_string()),
        RData::CNAME(CNAME(target)) => Some(target.to_ascii().trim_end_matches('.').to_owned()),
        RData::TXT(text) => Some(
            text.txt_data
                .iter()
                .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
                .collect(),
        ),
        _ => None,
    }
}

/// The base64 secret in a file: either the bare secret, or a BIND key file
/// (`key "ferry" { algorithm hmac-sha256; secret "..."; };`) as `tsig-keygen` prints it.
fn secret_from_key_file(text: &str) -> String {
    match text.split_once("secret") {
        Some((_, rest)) if text.contains('{') => {
            rest.split('"').nth(1).unwrap_or_default().to_owned()
        }
        _ => text.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(value: serde_json::Value) -> Attributes {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn zone_settings_read_with_defaults() {
        let config = Rfc2136Config::from_attributes(
            "Example.org.",
            &settings(json!({"backend": "rfc2136", "server": "127.0.0.1", "tsig_key_name": "ferry", "tsig_secret_file": "keys/ferry.key"})),
            Path::new("/specs"),
        )
        .unwrap();
        assert_eq!(config.zone, "example.org");
        assert_eq!(config.server, "127.0.0.1:53");
        assert_eq!(config.algorithm, "hmac-sha256");
        assert_eq!(
            config.secret,
            SecretSource::File(PathBuf::from("/specs/keys/ferry.key"))
        );
    }

    #[test]
    fn zone_setting_errors_say_what_to_add() {
        let errors: Vec<String> = [
            json!({"tsig_key_name": "k", "tsig_secret_env": "S"}),
            json!({"server": "127.0.0.1:53", "tsig_secret_env": "S"}),
            json!({"server": "127.0.0.1:53", "tsig_key_name": "k"}),
            json!({"server": "127.0.0.1:53", "tsig_key_name": "k", "tsig_secret_env": "S", "tsig_secret_file": "f"}),
            json!({"server": "127.0.0.1:53", "tsig_key_name": "k", "tsig_secret_env": "S", "tsig_algorithm": "hmac-md5"}),
            json!({"server": "a b:c", "tsig_key_name": "k", "tsig_secret_env": "S"}),
        ]
        .into_iter()
        .map(|value| {
            Rfc2136Config::from_attributes("example.org", &settings(value), Path::new("."))
                .unwrap_err()
                .to_string()
        })
        .collect();
        insta::assert_snapshot!(errors.join("\n"));
    }

    #[test]
    fn key_files_from_tsig_keygen_are_understood() {
        let file = "key \"ferry\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n";
        assert_eq!(secret_from_key_file(file), "c2VjcmV0");
        assert_eq!(secret_from_key_file("c2VjcmV0\n"), "c2VjcmV0");
    }

    #[test]
    fn long_txt_values_split_into_character_strings_and_join_back() {
        let long = "x".repeat(600);
        let data = txt(&long);
        let RData::TXT(text) = &data else {
            unreachable!("txt builds TXT data")
        };
        assert_eq!(text.txt_data.len(), 3);
        assert_eq!(value_text(&data), Some(long));
    }
}
