//! Kubernetes Services on a cluster's simulated API server: `PUT`, `POST`, `GET` and `DELETE`
//! of `/api/v1/namespaces/{namespace}/services[/{name}]` with the bearer token of the
//! kubeconfig the simulator hands out, answered and refused in the API server's shapes (a
//! `Status` object with its `reason` and `code`).
//!
//! The store keeps what the API server would: the object as written, with what it fills
//! (`metadata.uid`, `resourceVersion`, `creationTimestamp`, `spec.clusterIP`, a `nodePort` per
//! port of a `LoadBalancer` Service) and the status the cloud controller writes
//! (`world/cloud_controller.rs`). A Service the controller has handled carries its finalizer
//! (`service.kubernetes.io/load-balancer-cleanup`), as the real one does: its DELETE marks it
//! `deletionTimestamp` and it goes once the controller has removed its frontend.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// The bearer token of the kubeconfigs the credential actions hand out.
pub(crate) const KUBERNETES_TOKEN: &str = "ferry-sim-kubernetes-token";
/// The finalizer AKS's cloud controller puts on a `LoadBalancer` Service.
pub(crate) const LOAD_BALANCER_FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";
/// The annotation naming the public IP a Service's frontend takes.
pub(crate) const PIP_NAME_ANNOTATION: &str = "service.beta.kubernetes.io/azure-pip-name";
/// The annotation naming the resource group that IP lives in.
pub(crate) const PIP_GROUP_ANNOTATION: &str =
    "service.beta.kubernetes.io/azure-load-balancer-resource-group";
/// The simulator's own annotation: where the Service's pods listen, `IP:PORT` for every port or
/// `IP` for each port's `targetPort` on it.
pub(crate) const BACKEND_ANNOTATION: &str = "ferry-sim/backend";

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// One cluster's Services, shared by its API server and its cloud controller.
#[derive(Debug, Default)]
pub(crate) struct Services {
    /// By namespace, then name.
    items: BTreeMap<(String, String), Value>,
    counter: u64,
}

pub(crate) type SharedServices = Arc<Mutex<Services>>;

/// An answer of the API server: its status and JSON body.
pub(crate) struct KubernetesAnswer {
    pub status: u16,
    pub body: Value,
}

/// The API server's refusal: a `Status` object.
fn status(
    code: u16,
    reason: &str,
    message: impl Into<String>,
    name: Option<&str>,
) -> KubernetesAnswer {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code,
    });
    if let Some(name) = name {
        body["details"] = json!({"name": name, "kind": "services"});
    }
    KubernetesAnswer { status: code, body }
}

fn not_found(name: &str) -> KubernetesAnswer {
    status(
        404,
        "NotFound",
        format!("services \"{name}\" not found"),
        Some(name),
    )
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Answers one request below `/api/v1/`; `None` when the path is not a Services route.
pub(crate) fn answer(
    services: &SharedServices,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Option<KubernetesAnswer> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let route = match segments.as_slice() {
        ["api", "v1", "namespaces", namespace, "services"] => (*namespace, None),
        ["api", "v1", "namespaces", namespace, "services", name] => (*namespace, Some(*name)),
        _ => return None,
    };
    let authorised = authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| token.trim() == KUBERNETES_TOKEN);
    if !authorised {
        return Some(status(401, "Unauthorized", "Unauthorized", None));
    }
    let mut services = services
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Some(match (method, route) {
        ("GET", (namespace, None)) => services.list(namespace),
        ("GET", (namespace, Some(name))) => services.get(namespace, name),
        ("POST", (namespace, None)) => match parse(body) {
            Ok(object) => {
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if name.is_empty() {
                    status(
                        422,
                        "Invalid",
                        "Service \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        None,
                    )
                } else if services
                    .items
                    .contains_key(&(namespace.to_owned(), name.clone()))
                {
                    status(
                        409,
                        "AlreadyExists",
                        format!("services \"{name}\" already exists"),
                        Some(&name),
                    )
                } else {
                    services.write(namespace, &name, object)
                }
            }
            Err(refusal) => refusal,
        },
        ("PUT", (namespace, Some(name))) => match parse(body) {
            Ok(object) => services.write(namespace, name, object),
            Err(refusal) => refusal,
        },
        ("DELETE", (namespace, Some(name))) => services.delete(namespace, name),
        (method, _) => status(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
            None,
        ),
    })
}

fn parse(body: &[u8]) -> Result<Value, KubernetesAnswer> {
    match serde_json::from_slice::<Value>(body) {
        Ok(object) if object.is_object() => Ok(object),
        Ok(_) => Err(status(
            400,
            "BadRequest",
            "the body must be a JSON object",
            None,
        )),
        Err(error) => Err(status(
            400,
            "BadRequest",
            format!("the object provided is unrecognized: {error}"),
            None,
        )),
    }
}

/// The API server's validation of a Service (`422 Invalid`, "Service \"x\" is invalid: ...").
fn validate(name: &str, object: &Value) -> Result<(), KubernetesAnswer> {
    let invalid = |detail: String| {
        Err(status(
            422,
            "Invalid",
            format!("Service \"{name}\" is invalid: {detail}"),
            Some(name),
        ))
    };
    let service_type = object
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !SERVICE_TYPES.contains(&service_type) {
        return invalid(format!(
            "spec.type: Unsupported value: \"{service_type}\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
        ));
    }
    let ports = object.pointer("/spec/ports").and_then(Value::as_array);
    if service_type != "ExternalName" && ports.is_none_or(Vec::is_empty) {
        return invalid("spec.ports: Required value".to_owned());
    }
    for (index, port) in ports.into_iter().flatten().enumerate() {
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&number) {
            return invalid(format!(
                "spec.ports[{index}].port: Invalid value: {number}: must be between 1 and 65535, inclusive"
            ));
        }
    }
    if let Some(backend) = object
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(BACKEND_ANNOTATION))
    {
        let text = backend.as_str().unwrap_or_default();
        if text.parse::<SocketAddr>().is_err() && text.parse::<IpAddr>().is_err() {
            return invalid(format!(
                "metadata.annotations[{BACKEND_ANNOTATION}]: Invalid value: \"{text}\": the simulator's backend is IP:PORT, or IP for each port's targetPort"
            ));
        }
    }
    Ok(())
}

impl Services {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn list(&self, namespace: &str) -> KubernetesAnswer {
        let items: Vec<Value> = self
            .items
            .iter()
            .filter(|((item_namespace, _), _)| item_namespace == namespace)
            .map(|(_, service)| service.clone())
            .collect();
        KubernetesAnswer {
            status: 200,
            body: json!({"kind": "ServiceList", "apiVersion": "v1", "metadata": {"resourceVersion": self.counter.to_string()}, "items": items}),
        }
    }

    fn get(&self, namespace: &str, name: &str) -> KubernetesAnswer {
        match self.items.get(&(namespace.to_owned(), name.to_owned())) {
            Some(service) => KubernetesAnswer {
                status: 200,
                body: service.clone(),
            },
            None => not_found(name),
        }
    }

    /// A create or a replace (Services allow a PUT to create).
    fn write(&mut self, namespace: &str, name: &str, mut object: Value) -> KubernetesAnswer {
        let metadata_name = object.pointer("/metadata/name").and_then(Value::as_str);
        if let Some(given) = metadata_name
            && given != name
        {
            return status(
                400,
                "BadRequest",
                format!(
                    "the name of the object ({given}) does not match the name on the URL ({name})"
                ),
                None,
            );
        }
        if let Some(given) = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            && given != namespace
        {
            return status(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
                None,
            );
        }
        if let Err(refusal) = validate(name, &object) {
            return refusal;
        }
        let key = (namespace.to_owned(), name.to_owned());
        let existing = self.items.get(&key).cloned();
        if let (Some(existing), Some(given)) = (
            &existing,
            object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str),
        ) && existing
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            != Some(given)
        {
            return status(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on services \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                ),
                Some(name),
            );
        }
        let version = self.next();
        if !object.get("metadata").is_some_and(Value::is_object) {
            object["metadata"] = json!({});
        }
        if !object.get("spec").is_some_and(Value::is_object) {
            object["spec"] = json!({});
        }
        object["kind"] = json!("Service");
        object["apiVersion"] = json!("v1");
        let metadata = object["metadata"].as_object_mut().expect("object");
        metadata.insert("name".to_owned(), json!(name));
        metadata.insert("namespace".to_owned(), json!(namespace));
        metadata.insert("resourceVersion".to_owned(), json!(version.to_string()));
        match &existing {
            Some(existing) => {
                for field in [
                    "uid",
                    "creationTimestamp",
                    "finalizers",
                    "deletionTimestamp",
                ] {
                    match existing["metadata"].get(field) {
                        Some(value) => metadata.insert(field.to_owned(), value.clone()),
                        None => metadata.remove(field),
                    };
                }
                object["status"] = existing["status"].clone();
            }
            None => {
                metadata.insert(
                    "uid".to_owned(),
                    json!(format!("{version:08x}-5e41-4c1d-8a11-{:012x}", version)),
                );
                metadata.insert("creationTimestamp".to_owned(), json!(now()));
                metadata.remove("finalizers");
                metadata.remove("deletionTimestamp");
                object["status"] = json!({"loadBalancer": {}});
            }
        }
        let service_type = object
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_owned();
        let spec = object["spec"].as_object_mut().expect("object");
        spec.insert("type".to_owned(), json!(service_type));
        let cluster_ip = existing
            .as_ref()
            .and_then(|existing| existing.pointer("/spec/clusterIP").cloned())
            .unwrap_or_else(|| json!(format!("10.0.{}.{}", (version >> 8) & 0xff, version & 0xff)));
        spec.insert("clusterIP".to_owned(), cluster_ip.clone());
        spec.insert("clusterIPs".to_owned(), json!([cluster_ip]));
        let old_ports: Vec<Value> = existing
            .as_ref()
            .and_then(|existing| {
                existing
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .cloned()
            })
            .unwrap_or_default();
        let needs_node_port = matches!(service_type.as_str(), "LoadBalancer" | "NodePort");
        let mut next_node_port = 30000 + (version % 2000) as u16;
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut().filter(|port| port.is_object()) {
                let number = port["port"].clone();
                let entry = port.as_object_mut().expect("object");
                entry.entry("protocol").or_insert(json!("TCP"));
                entry.entry("targetPort").or_insert(number.clone());
                if needs_node_port && !entry.contains_key("nodePort") {
                    let kept = old_ports
                        .iter()
                        .find(|old| old["port"] == number)
                        .and_then(|old| old.get("nodePort").cloned());
                    let node_port = kept.unwrap_or_else(|| {
                        next_node_port += 1;
                        json!(next_node_port)
                    });
                    entry.insert("nodePort".to_owned(), node_port);
                }
            }
        }
        let created = existing.is_none();
        self.items.insert(key, object.clone());
        KubernetesAnswer {
            status: if created { 201 } else { 200 },
            body: object,
        }
    }

    fn delete(&mut self, namespace: &str, name: &str) -> KubernetesAnswer {
        let key = (namespace.to_owned(), name.to_owned());
        let Some(service) = self.items.get_mut(&key) else {
            return not_found(name);
        };
        let finalized = service
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if finalized {
            let removed = self.items.remove(&key).unwrap_or_default();
            return KubernetesAnswer {
                status: 200,
                body: removed,
            };
        }
        if service.pointer("/metadata/deletionTimestamp").is_none() {
            service["metadata"]["deletionTimestamp"] = json!(now());
            service["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
        let body = service.clone();
        self.counter += 1;
        KubernetesAnswer { status: 200, body }
    }

    /// Every Service, for the cloud controller.
    pub(crate) fn snapshot(&self) -> Vec<Value> {
        self.items.values().cloned().collect()
    }

    /// What the cloud controller found: the Service's status, and its finalizer once the
    /// controller handles it. Nothing when the Service was replaced meanwhile (another uid).
    pub(crate) fn record(&mut self, service: &Value, status: Value, finalizer: bool) {
        let Some(stored) = self.stored_mut(service) else {
            return;
        };
        let before = stored.clone();
        stored["status"] = status;
        if finalizer {
            let finalizers = stored["metadata"]
                .as_object_mut()
                .expect("object")
                .entry("finalizers")
                .or_insert(json!([]));
            if let Some(list) = finalizers.as_array_mut()
                && !list.iter().any(|item| item == LOAD_BALANCER_FINALIZER)
            {
                list.push(json!(LOAD_BALANCER_FINALIZER));
            }
        }
        // A change is a new version of the object, as the API server counts them.
        if *stored != before {
            self.counter += 1;
            let version = self.counter.to_string();
            if let Some(stored) = self.stored_mut(service) {
                stored["metadata"]["resourceVersion"] = json!(version);
            }
        }
    }

    /// Lets go of a Service that is no longer a `LoadBalancer` once its frontend is removed: no
    /// finalizer, no ingress.
    pub(crate) fn release(&mut self, service: &Value) {
        let Some(stored) = self.stored_mut(service) else {
            return;
        };
        if let Some(finalizers) = stored
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            finalizers.retain(|item| item != LOAD_BALANCER_FINALIZER);
        }
        stored["status"] = json!({"loadBalancer": {}});
        self.counter += 1;
        let version = self.counter.to_string();
        if let Some(stored) = self.stored_mut(service) {
            stored["metadata"]["resourceVersion"] = json!(version);
        }
    }

    /// Removes a deleted Service whose frontend the controller has removed.
    pub(crate) fn finalize(&mut self, service: &Value) {
        if self.stored_mut(service).is_some() {
            let key = service_key(service);
            self.items.remove(&key);
        }
    }

    fn stored_mut(&mut self, service: &Value) -> Option<&mut Value> {
        let stored = self.items.get_mut(&service_key(service))?;
        (stored.pointer("/metadata/uid") == service.pointer("/metadata/uid")).then_some(stored)
    }
}

fn service_key(service: &Value) -> (String, String) {
    let field = |pointer: &str| {
        service
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (field("/metadata/namespace"), field("/metadata/name"))
}
