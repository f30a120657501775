//! ARM's paths: which request reads or writes a resource, lists a collection, runs an action
//! or polls an operation; and the answers common to every type (not found, pages of a list).

use std::time::Duration;

use serde_json::{Value, json};

use super::body::properties_mut;
use super::ids::{
    Kind, group_name, kind_of, lower, name_of, subscription_of, type_and_name, type_of,
};
use super::{Refusal, SimRequest, SimResponse, Stored, World};

impl World {
    /// Handles one authenticated ARM request. Returns the response and, when it started an
    /// operation, the operation to complete after the given (scaled) time.
    pub fn handle(&mut self, request: &SimRequest) -> (SimResponse, Option<(String, Duration)>) {
        let disks = self.disk_changes(request);
        let remaining = match self.charge(request) {
            Ok(remaining) => remaining,
            Err(throttled) => {
                self.record_request(request, &throttled, disks);
                return (throttled, None);
            }
        };
        let mut answer = match self.route(request) {
            Ok(answer) => answer,
            Err(refusal) => (refusal, None),
        };
        for (name, value) in remaining {
            answer.0 = answer.0.with_header(&name, value);
        }
        if let Some((operation_id, _)) = &answer.1
            && let Some(record) = self.operations.get_mut(operation_id)
        {
            record.disks = disks.clone();
        }
        self.record_request(request, &answer.0, disks);
        answer
    }

    fn route(
        &mut self,
        request: &SimRequest,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        let segments: Vec<&str> = request
            .path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let lowered: Vec<String> = segments.iter().map(|segment| lower(segment)).collect();
        let method = request.method.as_str();
        if segments.len() < 2 || lowered[0] != "subscriptions" {
            return Err(SimResponse::error(
                404,
                "InvalidResourceType",
                format!("no ARM route for {}", request.path),
            ));
        }
        if request.query_value("api-version").is_none() {
            return Err(SimResponse::error(
                400,
                "MissingApiVersionParameter",
                "the api-version query parameter (?api-version=) is required for all requests",
            ));
        }
        self.check_route_and_api_version(request, &segments)?;
        let subscription = segments[1];
        // Operation status and results.
        if segments.len() == 8 && lowered[2] == "providers" && lowered[3] == "microsoft.simulator" {
            return Ok(match lowered[6].as_str() {
                "operations" => (self.operation_status(segments[7]), None),
                _ => (self.operation_result(segments[7]), None),
            });
        }
        // The subscription's groups, and its resources across every group (`$filter`ed by a
        // tag: a drill's clean-up proves with them that nothing of the drill is left).
        if segments.len() == 3 && lowered[2] == "resourcegroups" && method == "GET" {
            return Ok((
                self.list_groups_in_subscription(request, subscription)?,
                None,
            ));
        }
        if segments.len() == 3 && lowered[2] == "resources" && method == "GET" {
            return Ok((
                self.list_resources_in_subscription(request, subscription)?,
                None,
            ));
        }
        // A type's list across the subscription, `/subscriptions/{id}/providers/{namespace}/{type}`.
        if segments.len() == 5 && lowered[2] == "providers" && method == "GET" {
            refuse_instance_view_without_filter(request)?;
            let resource_type = format!("{}/{}", segments[3], segments[4]);
            return Ok((
                self.list_in_subscription(request, subscription, &resource_type),
                None,
            ));
        }
        if segments.len() < 4 || lowered[2] != "resourcegroups" {
            return Err(SimResponse::error(
                404,
                "InvalidResourceType",
                format!("no ARM route for {}", request.path),
            ));
        }
        let group_id = format!(
            "/subscriptions/{subscription}/resourceGroups/{}",
            segments[3]
        );
        self.require_group_not_deleting(request, &format!("/{}", segments.join("/")))?;
        if segments.len() == 4 {
            return self.resource_request(request, &group_id);
        }
        if segments.len() == 5 && method == "POST" {
            return match lowered[4].as_str() {
                "moveresources" => self.move_resources(request, &group_id, false),
                "validatemoveresources" => self.move_resources(request, &group_id, true),
                _ => Err(SimResponse::error(
                    404,
                    "InvalidResourceType",
                    format!("no action {}", segments[4]),
                )),
            };
        }
        if segments.len() < 7 || lowered[4] != "providers" {
            return Err(SimResponse::error(
                404,
                "InvalidResourceType",
                format!("no ARM route for {}", request.path),
            ));
        }
        self.require_group(&group_id)?;
        let full_path = format!("/{}", segments.join("/"));
        if let Some(answer) = self.load_balancer_part(request, &full_path) {
            return answer.map(|response| (response, None));
        }
        let after_namespace = segments.len() - 6;
        if after_namespace.is_multiple_of(2) {
            return self.resource_request(request, &full_path);
        }
        // An odd count: a collection, an action on a resource, or a DNS record-type listing.
        let parent = format!("/{}", segments[..segments.len() - 1].join("/"));
        let last = lowered[lowered.len() - 1].as_str();
        let is_zone_listing = after_namespace == 3 && lowered[6] == "dnszones";
        if is_zone_listing && method == "GET" {
            if last == "recordsets" || last == "all" {
                return Ok((self.list_children(request, &parent, None)?, None));
            }
            return Ok((
                self.list_children(request, &parent, Some(segments[segments.len() - 1]))?,
                None,
            ));
        }
        if after_namespace == 1 && method == "GET" {
            refuse_instance_view_without_filter(request)?;
            return Ok((self.list(request, &full_path)?, None));
        }
        if after_namespace >= 3 && method == "GET" && last != "instanceview" && last != "vmsizes" {
            return Ok((self.list(request, &full_path)?, None));
        }
        self.action(request, &parent, last)
    }

    pub(super) fn stored_response(&self, status: u16, stored: &Stored) -> SimResponse {
        SimResponse::json(status, &self.response_body(stored))
            .with_header("ETag", stored.etag.clone())
    }

    pub(super) fn not_found(id: &str) -> SimResponse {
        let kind = kind_of(id);
        if kind == Kind::Group {
            return SimResponse::error(
                404,
                "ResourceGroupNotFound",
                format!("Resource group '{}' could not be found.", name_of(id)),
            );
        }
        SimResponse::error(
            404,
            "ResourceNotFound",
            format!(
                "The Resource '{}' under resource group '{}' was not found.",
                type_and_name(id),
                group_name(id)
            ),
        )
    }

    fn resource_request(
        &mut self,
        request: &SimRequest,
        id: &str,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        match request.method.as_str() {
            "GET" | "HEAD" => {
                let stored = self
                    .resources
                    .get(&lower(id))
                    .ok_or_else(|| Self::not_found(id))?;
                let mut stored = stored.clone();
                if kind_of(id) == Kind::VirtualMachine
                    && request
                        .query_value("$expand")
                        .is_some_and(|expand| expand.eq_ignore_ascii_case("instanceView"))
                {
                    properties_mut(&mut stored.body)
                        .insert("instanceView".to_owned(), self.instance_view(id));
                }
                if request.method == "HEAD" {
                    return Ok((SimResponse::empty(204), None));
                }
                Ok((self.stored_response(200, &stored), None))
            }
            "PUT" | "PATCH" => self.write(request, id),
            "DELETE" => self.delete(request, id),
            other => Err(SimResponse::error(
                405,
                "MethodNotAllowed",
                format!("{other} is not supported on {id}"),
            )),
        }
    }

    /// Routes an action (`POST {vm}/deallocate`, `GET {vm}/instanceView`) to its resource's
    /// ARM type.
    fn action(
        &mut self,
        request: &SimRequest,
        resource_id: &str,
        action: &str,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        let key = lower(resource_id);
        let stored = self
            .resources
            .get(&key)
            .cloned()
            .ok_or_else(|| Self::not_found(resource_id))?;
        match kind_of(resource_id) {
            Kind::VirtualMachine => {
                self.virtual_machine_action(request, resource_id, stored, action)
            }
            Kind::ManagedCluster => {
                self.managed_cluster_action(request, resource_id, &stored, action)
            }
            _ => Err(no_such_action(request, resource_id, action)),
        }
    }

    fn list(&self, request: &SimRequest, collection: &str) -> Result<SimResponse, Refusal> {
        let items = self.items_of(collection);
        Ok(self.page(request, items, |stored| self.response_body(stored)))
    }

    /// The items of a collection (`{group}/providers/Microsoft.Compute/disks`,
    /// `/subscriptions/{id}/resourceGroups`): what sits directly under it.
    pub(super) fn items_of(&self, collection: &str) -> Vec<&Stored> {
        let prefix = format!("{}/", lower(collection));
        self.resources
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter(|(key, _)| !key[prefix.len()..].contains('/'))
            .map(|(_, stored)| stored)
            .collect()
    }

    /// Every resource of one type in a subscription, whatever its group, paged like a group's list.
    fn list_in_subscription(
        &self,
        request: &SimRequest,
        subscription: &str,
        resource_type: &str,
    ) -> SimResponse {
        // `statusOnly=true` "enables fetching run time status of all Virtual Machines in the
        // subscription" (VirtualMachines_ListAll, Compute 2025-04-01).
        let status_only = request
            .query_value("statusOnly")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
        let items: Vec<&Stored> = self
            .resources
            .values()
            .filter(|stored| {
                subscription_of(&stored.id).eq_ignore_ascii_case(subscription)
                    && kind_of(&stored.id) != Kind::Group
                    && type_of(&stored.id).eq_ignore_ascii_case(resource_type)
            })
            .collect();
        self.page(request, items, |stored| {
            if status_only && kind_of(&stored.id) == Kind::VirtualMachine {
                self.status_only_body(stored)
            } else {
                self.response_body(stored)
            }
        })
    }

    /// A VM as `statusOnly=true` lists it: who it is and its instance view (power state),
    /// none of its configuration.
    fn status_only_body(&self, stored: &Stored) -> Value {
        json!({
            "id": stored.body.get("id").cloned().unwrap_or_else(|| json!(stored.id)),
            "name": name_of(&stored.id),
            "type": type_of(&stored.id),
            "location": stored.body.get("location").cloned().unwrap_or(Value::Null),
            "properties": {"instanceView": self.instance_view(&stored.id)},
        })
    }

    fn list_children(
        &self,
        request: &SimRequest,
        zone: &str,
        record_type: Option<&str>,
    ) -> Result<SimResponse, Refusal> {
        let prefix = format!("{}/", lower(zone));
        let items: Vec<&Stored> = self
            .resources
            .iter()
            .filter(|(key, _)| {
                let Some(rest) = key.strip_prefix(&prefix) else {
                    return false;
                };
                let parts: Vec<&str> = rest.split('/').collect();
                parts.len() == 2
                    && record_type.is_none_or(|wanted| parts[0].eq_ignore_ascii_case(wanted))
            })
            .map(|(_, stored)| stored)
            .collect();
        Ok(self.page(request, items, |stored| self.response_body(stored)))
    }

    /// One page of a list, with `nextLink` carrying `$skiptoken` when more remain; `body`
    /// shows each item of the page (only of the page: a list of thousands is asked page by page).
    pub(super) fn page(
        &self,
        request: &SimRequest,
        items: Vec<&Stored>,
        body: impl Fn(&Stored) -> Value,
    ) -> SimResponse {
        let start: usize = request
            .query_value("$skiptoken")
            .and_then(|token| token.parse().ok())
            .unwrap_or(0);
        let size = self.settings.page_size.max(1);
        let page: Vec<Value> = items
            .iter()
            .skip(start)
            .take(size)
            .map(|stored| body(stored))
            .collect();
        let mut body = json!({"value": page});
        if start + size < items.len() {
            // The next page is asked with the same query (`statusOnly`, `$expand`) and where
            // to start: a client follows `nextLink` as it is.
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in &request.query {
                if !name.eq_ignore_ascii_case("$skiptoken") {
                    query.append_pair(name, value);
                }
            }
            query.append_pair("$skiptoken", &(start + size).to_string());
            body["nextLink"] = json!(format!(
                "{}{}?{}",
                self.settings.endpoint,
                request.path,
                query.finish()
            ));
        }
        SimResponse::json(200, &body)
    }
}

/// Compute's lists of VMs (`VirtualMachines_List` by group, `VirtualMachines_ListAll`) take
/// `$expand=instanceView` only with a valid `$filter` ("this can only be specified if a valid
/// $filter option is specified", Compute 2025-04-01's virtualMachine.json; the only filter is
/// a scale set's id, which standalone VMs never match): a list of a group's VMs does not carry
/// their power state. The subscription's list with `statusOnly=true` does.
fn refuse_instance_view_without_filter(request: &SimRequest) -> Result<(), Refusal> {
    let expands_instance_view = request
        .query_value("$expand")
        .is_some_and(|expand| expand.eq_ignore_ascii_case("instanceView"));
    if expands_instance_view
        && request.query_value("$filter").is_none()
        && lower(&request.path).ends_with("/microsoft.compute/virtualmachines")
    {
        return Err(SimResponse::error(
            400,
            "InvalidParameter",
            "$expand=instanceView can only be specified with a valid $filter on a list of virtual machines: list the subscription's virtual machines with statusOnly=true for their power state",
        ));
    }
    Ok(())
}

/// ARM's answer to an action the simulator does not serve.
pub(super) fn no_such_action(request: &SimRequest, resource_id: &str, action: &str) -> Refusal {
    SimResponse::error(
        404,
        "InvalidResourceType",
        format!(
            "the simulator has no {} {action} on {}",
            request.method,
            type_of(resource_id)
        ),
    )
}
