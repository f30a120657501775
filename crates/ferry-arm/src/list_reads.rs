//! Reads through lists: within a read round (one pass of an observation's reads), a resource
//! is read from ARM's list of its type in its resource group, fetched once for every instance
//! that asks, instead of one GET each. ARM meters reads per subscription and principal (a
//! burst of about 250, then about 25 a second), so 10,000 GETs take minutes where a few
//! hundred lists take seconds.
//!
//! What a list may answer, and what it may not:
//! - an item in a list whose every page was read is the resource, as its GET shows it (a
//!   resource provider's list returns the same bodies as its GET, without `$expand`);
//! - a resource missing from such a list is absent: the list answered, so its group exists;
//! - a resource whose group is missing from the subscription's complete list of groups, or
//!   whose list ARM answered `404 ResourceGroupNotFound`, is absent;
//! - a list that failed in any other way (refused, throttled past the client's retries, a 404
//!   ARM could not route) answers nothing: each resource is read on its own, with its own GET,
//!   and its own error if that fails too. A failed list is never read as absent.
//!
//! A VM's power state is not in its group's list: Compute takes `$expand=instanceView` on a
//! list of VMs only with a `$filter` naming a scale set ("this can only be specified if a
//! valid $filter option is specified", `VirtualMachines_List` in Compute 2025-04-01's
//! `virtualMachine.json`), which standalone VMs never match. The subscription's list with
//! `statusOnly=true` ("enables fetching run time status of all Virtual Machines in the
//! subscription", `VirtualMachines_ListAll`) carries every VM's instance view; a VM missing
//! from it (created since) has its instance view read on its own.
//!
//! The first read of a group at a generation fetches, at once and a few at a time, every list
//! the spec's resources at that generation will need (each of its groups' lists of the types
//! it places there, and the VMs' statuses): an observation reads its instances kind by kind,
//! so without this its reads would wait for one group's lists after another.
//!
//! Outside a round (a step's reads before and after its writes), and for every type without a
//! list here, reads are one GET each, as they always were: a step must see its own writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_core::Generation;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::client::ArmClient;
use crate::deployment::AzureDeployment;
use crate::error::ArmError;
use crate::id::ResourceId;
use crate::models::VirtualMachineInstanceView;
use crate::provider_calls::api_version;

/// How a provider reads a resource: through the round's lists when a round is open (an
/// observation's reads), or one GET each (a step's reads, which must see its own writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadVia {
    Lists,
    Single,
}

/// The types read through lists of a group: every ARM type the Azure providers read.
const LISTED_TYPES: &[&str] = &[
    "microsoft.compute/virtualmachines",
    "microsoft.compute/disks",
    "microsoft.network/virtualnetworks",
    "microsoft.network/publicipaddresses",
    "microsoft.network/networkinterfaces",
    "microsoft.containerservice/managedclusters",
];

/// What one list said.
#[derive(Debug)]
enum Listing {
    /// Every page was read: the items by lower-cased id.
    Complete(HashMap<String, Value>),
    /// The resource group does not exist: everything in it is absent.
    GroupMissing,
    /// The list failed: its resources are read one by one.
    Failed,
}

/// How many lists a round's prefetch asks for at once.
const PREFETCH_CONCURRENCY: usize = 16;

/// The newest generation a group's name is looked for in, to prefetch its generation's lists.
const PREFETCH_GENERATIONS: Generation = 32;

/// The lists read in one round, each fetched once however many reads wait for it.
#[derive(Debug, Default)]
struct RoundCache {
    lists: Mutex<HashMap<String, Arc<OnceCell<Arc<Listing>>>>>,
    /// The groups (lower-cased names) whose generation's lists were prefetched.
    prefetched: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
}

impl RoundCache {
    fn cell(&self, key: &str) -> Arc<OnceCell<Arc<Listing>>> {
        let mut lists = self
            .lists
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        lists.entry(key.to_owned()).or_default().clone()
    }
}

/// The open rounds of one deployment: while at least one is open, reads through lists share
/// one cache; when the last closes, the cache goes, so the next round reads afresh.
#[derive(Debug, Default)]
pub(crate) struct ReadRounds {
    state: Mutex<RoundState>,
}

#[derive(Debug, Default)]
struct RoundState {
    open: usize,
    cache: Option<Arc<RoundCache>>,
}

impl ReadRounds {
    fn lock(&self) -> std::sync::MutexGuard<'_, RoundState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn current(&self) -> Option<Arc<RoundCache>> {
        self.lock().cache.clone()
    }
}

/// An open read round; dropping it closes the round.
#[derive(Debug)]
pub struct ReadRoundGuard {
    rounds: Arc<ReadRounds>,
}

impl Drop for ReadRoundGuard {
    fn drop(&mut self) {
        let mut state = self.rounds.lock();
        state.open = state.open.saturating_sub(1);
        if state.open == 0 {
            state.cache = None;
        }
    }
}

impl AzureDeployment {
    /// Opens a read round (see the module's documentation); it lasts until the guard drops.
    /// Rounds opened while one is open share its lists.
    pub fn begin_read_round(&self) -> ReadRoundGuard {
        let rounds = self.read_rounds().clone();
        {
            let mut state = rounds.lock();
            state.open += 1;
            if state.cache.is_none() {
                state.cache = Some(Arc::new(RoundCache::default()));
            }
        }
        ReadRoundGuard { rounds }
    }

    /// A resource as ARM has it, `None` when it does not exist: from its group's list within a
    /// round when `via` is [`ReadVia::Lists`], else (or when the list cannot answer) its GET.
    pub async fn read_resource(
        &self,
        id: &ResourceId,
        via: ReadVia,
    ) -> Result<Option<Value>, ArmError> {
        if via == ReadVia::Lists
            && let Some(cache) = self.read_rounds().current()
            && let Some(answer) = listed(self, &cache, id).await
        {
            return Ok(answer);
        }
        Ok(self
            .client()
            .read::<Value>(id)
            .await?
            .map(|fetched| fetched.value))
    }

    /// A VM's instance view (power state): from the subscription's `statusOnly` list within a
    /// round when `via` is [`ReadVia::Lists`], else (or when that list cannot answer) its own.
    pub async fn virtual_machine_instance_view(
        &self,
        vm: &ResourceId,
        via: ReadVia,
    ) -> Result<VirtualMachineInstanceView, ArmError> {
        if via == ReadVia::Lists
            && let Some(cache) = self.read_rounds().current()
        {
            let (path, query) = statuses_list(vm.subscription_id());
            let listing = fetch(self.client(), &cache, &path, api_version::COMPUTE, &query).await;
            if let Listing::Complete(items) = &*listing
                && let Some(view) = items
                    .get(&vm.normalized())
                    .and_then(|item| item.pointer("/properties/instanceView"))
                    .and_then(|view| serde_json::from_value(view.clone()).ok())
            {
                return Ok(view);
            }
        }
        self.client().virtual_machine_instance_view(vm).await
    }
}

/// What the round's lists say of `id`: `Some(Some(body))` present, `Some(None)` absent,
/// `None` when no list can answer (a type without a list, a list that failed).
async fn listed(
    azure: &AzureDeployment,
    cache: &RoundCache,
    id: &ResourceId,
) -> Option<Option<Value>> {
    let client = azure.client();
    let subscription = id.subscription_id();
    let group = id.resource_group_name()?;
    let groups = groups_listing(client, cache, subscription).await;
    let group_id = ResourceId::resource_group(subscription, group);
    let group_listed = match &*groups {
        Listing::Complete(items) => Some(items.get(&group_id.normalized()).cloned()),
        _ => None,
    };
    if !matches!(group_listed, Some(None)) {
        prefetch(azure, cache, subscription, group, &groups).await;
    }
    if id.namespace().is_none() {
        // The group itself.
        return group_listed;
    }
    let pairs = id.type_name_pairs();
    let resource_type = id.resource_type();
    if pairs.len() != 1 || !LISTED_TYPES.contains(&resource_type.to_ascii_lowercase().as_str()) {
        return None;
    }
    if matches!(group_listed, Some(None)) {
        return Some(None);
    }
    let path = format!("{group_id}/providers/{resource_type}");
    match fetch(
        client,
        cache,
        &path,
        api_version::for_type(&resource_type),
        &[],
    )
    .await
    .as_ref()
    {
        Listing::Complete(items) => Some(items.get(&id.normalized()).cloned()),
        Listing::GroupMissing => Some(None),
        Listing::Failed => None,
    }
}

/// The subscription's resource groups.
async fn groups_listing(
    client: &ArmClient,
    cache: &RoundCache,
    subscription: &str,
) -> Arc<Listing> {
    let path = format!("/subscriptions/{subscription}/resourcegroups");
    fetch(client, cache, &path, api_version::RESOURCES, &[]).await
}

/// The path and query of the subscription's list of VMs with their statuses.
fn statuses_list(subscription: &str) -> (String, Vec<(String, String)>) {
    (
        format!("/subscriptions/{subscription}/providers/Microsoft.Compute/virtualMachines"),
        vec![("statusOnly".to_owned(), "true".to_owned())],
    )
}

/// Fetches, once per round and group, every list the spec's resources need at the generation
/// whose group is named `group`: its groups' lists of the types the spec places in each
/// (and the VMs' interfaces and statuses), skipping groups the subscription does not have.
async fn prefetch(
    azure: &AzureDeployment,
    cache: &RoundCache,
    subscription: &str,
    group: &str,
    groups: &Listing,
) {
    let cell = {
        let mut prefetched = cache
            .prefetched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        prefetched
            .entry(group.to_ascii_lowercase())
            .or_default()
            .clone()
    };
    cell.get_or_init(|| async {
        let Some(generation) =
            (1..=PREFETCH_GENERATIONS).find(|generation| azure.has_group_named(group, *generation))
        else {
            return;
        };
        // Each list's path, api-version and query.
        type ListToFetch = (String, &'static str, Vec<(String, String)>);
        let mut lists: Vec<ListToFetch> = Vec::new();
        for (group_name, resource_type) in azure.listed_types_at(generation) {
            let group_id = ResourceId::resource_group(subscription, &group_name);
            if let Listing::Complete(items) = groups
                && !items.contains_key(&group_id.normalized())
            {
                continue;
            }
            let path = format!("{group_id}/providers/{resource_type}");
            if lists
                .iter()
                .all(|(known, _, _)| !known.eq_ignore_ascii_case(&path))
            {
                lists.push((path, api_version::for_type(&resource_type), Vec::new()));
            }
        }
        if lists
            .iter()
            .any(|(path, _, _)| path.to_ascii_lowercase().ends_with("/virtualmachines"))
        {
            // Its pages come one after another: it starts first.
            let (path, query) = statuses_list(subscription);
            lists.insert(0, (path, api_version::COMPUTE, query));
        }
        futures_util::stream::iter(lists)
            .for_each_concurrent(PREFETCH_CONCURRENCY, |(path, version, query)| async move {
                fetch(azure.client(), cache, &path, version, &query).await;
            })
            .await;
    })
    .await;
}

/// The list at `path`, fetched once per round: every page, or why not.
async fn fetch(
    client: &ArmClient,
    cache: &RoundCache,
    path: &str,
    api_version: &str,
    query: &[(String, String)],
) -> Arc<Listing> {
    let key = format!("{}?{query:?}", path.to_ascii_lowercase());
    let cell = cache.cell(&key);
    cell.get_or_init(|| async {
        let listing = match client
            .list_with_query::<Value>(path, api_version, query)
            .await
        {
            Ok(items) => Listing::Complete(
                items
                    .into_iter()
                    .filter_map(|item| {
                        let id = item.get("id")?.as_str()?.to_ascii_lowercase();
                        Some((id, item))
                    })
                    .collect(),
            ),
            Err(error) if error.code() == Some("ResourceGroupNotFound") => Listing::GroupMissing,
            Err(_) => Listing::Failed,
        };
        Arc::new(listing)
    })
    .await
    .clone()
}
