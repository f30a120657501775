//! A subscription's lists filtered by a tag (`ferry_arm::subscription_lists`) against the
//! simulator: `Resources - List` and `Resource Groups - List` find what carries the tag in
//! every group, page after page, and nothing else; ARM's refusals of the filters it does not
//! take come back with its code.
//!
//! No official example of either list is stored in Azure/azure-rest-api-specs (the
//! 2025-04-01 swagger's `Resources_List` and `ResourceGroups_List` carry no `x-ms-examples`):
//! the shapes follow that swagger's `ResourceListResult` (`GenericResourceExpanded` items) and
//! `ResourceGroupListResult`; see `fixtures/arm-examples/README.md`.

mod support;

use ferry_arm::models::{GenericResource, ResourceGroup};
use ferry_arm::{ArmError, WriteOptions, api_version};
use serde_json::{Value, json};
use support::{SUBSCRIPTION, create_group, group_id, resource_id, start_with};

/// Creates an empty disk carrying `tags`; its id.
async fn tagged_disk(
    client: &ferry_arm::ArmClient,
    group: &str,
    name: &str,
    tags: Value,
) -> String {
    let id = resource_id(group, "Microsoft.Compute/disks", name);
    let _: Value = client
        .put_and_wait(
            &id,
            api_version::DISKS,
            &json!({"location": "westeurope", "tags": tags, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn what_carries_a_tag_is_found_in_every_group_and_page_and_nothing_else() {
    let world = start_with(|config| config.page_size = 2).await;
    let client = &world.client;
    create_group(client, "prod").await;
    create_group(client, "other").await;
    let _: Value = client
        .put_and_wait(
            &group_id("prod-drill"),
            api_version::RESOURCES,
            &json!({"location": "westeurope", "tags": {"ferry-drill": "d1"}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    // Production's own, untagged; another drill's; and this drill's, three in its group
    // and one outside it (a snapshot left in production's group would be found the same way).
    tagged_disk(client, "prod", "data0", json!({"role": "data"})).await;
    tagged_disk(client, "other", "data0", json!({"ferry-drill": "d2"})).await;
    let mut wanted = Vec::new();
    for name in ["copy0", "copy1", "copy2"] {
        wanted.push(tagged_disk(client, "prod-drill", name, json!({"ferry-drill": "d1"})).await);
    }
    wanted.push(
        tagged_disk(
            client,
            "other",
            "stray",
            json!({"FERRY-DRILL": "d1", "role": "copy"}),
        )
        .await,
    );
    let mark = world.simulator.events().len();

    let tagged = client
        .tagged_in_subscription(SUBSCRIPTION, "ferry-drill", "d1")
        .await
        .unwrap();
    let mut found: Vec<String> = tagged
        .resources
        .iter()
        .map(|resource| resource.id.clone().unwrap())
        .collect();
    found.sort();
    wanted.sort();
    let lowered =
        |ids: &[String]| -> Vec<String> { ids.iter().map(|id| id.to_lowercase()).collect() };
    assert_eq!(lowered(&found), lowered(&wanted));
    // Filtered by a tag's name and value, ARM leaves the tags out; the type is there.
    for resource in &tagged.resources {
        assert_eq!(resource.tags, None, "{resource:?}");
        assert_eq!(
            resource.resource_type.as_deref(),
            Some("Microsoft.Compute/disks")
        );
        assert_eq!(resource.properties, None);
    }
    let groups: Vec<String> = tagged
        .groups
        .iter()
        .map(|group| group.name.clone().unwrap())
        .collect();
    assert_eq!(groups, ["prod-drill"]);
    assert_eq!(tagged.ids().len(), 5);

    // Four resources at two a page: the list followed its nextLink once, with the filter.
    let listed: Vec<String> = world
        .simulator
        .events()
        .into_iter()
        .skip(mark)
        .filter(|event| event.what == "request" && event.path.ends_with("/resources"))
        .map(|event| event.path)
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");

    // Another value, and a tag nobody carries.
    let other = client
        .resources_tagged(SUBSCRIPTION, "ferry-drill", "d2")
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert!(
        client
            .tagged_in_subscription(SUBSCRIPTION, "ferry-drill", "d3")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn filters_arm_refuses_are_refused_with_its_code() {
    let world = start_with(|_| {}).await;
    let client = &world.client;
    create_group(client, "prod").await;
    let refused = |filter: &str, collection: &str| {
        let filter = filter.to_owned();
        let path = format!("/subscriptions/{SUBSCRIPTION}/{collection}");
        async move {
            client
                .list_with_query::<Value>(
                    &path,
                    api_version::RESOURCES,
                    &[("$filter".to_owned(), filter)],
                )
                .await
                .unwrap_err()
        }
    };
    for (filter, collection) in [
        // A tag filter does not combine with any other (Azure/azure-rest-api-specs#21324).
        (
            "tagName eq 'ferry-drill' and tagValue eq 'd1' and resourceType eq 'Microsoft.Compute/snapshots'",
            "resources",
        ),
        (
            "resourceGroup eq 'prod' and tagName eq 'ferry-drill'",
            "resources",
        ),
        ("tagValue eq 'd1'", "resources"),
        (
            "resourceType eq 'Microsoft.Compute/disks'",
            "resourcegroups",
        ),
    ] {
        let error: ArmError = refused(filter, collection).await;
        assert_eq!(error.status(), Some(400), "{filter}: {error}");
        assert_eq!(error.code(), Some("InvalidFilterInQueryString"), "{filter}");
        assert!(
            error.to_string().contains(&format!(
                "Invalid $filter '{filter}' specified in the query string."
            )),
            "{error}"
        );
    }
    // Without a filter, the lists hold everything: the groups, and no group as a resource.
    let groups: Vec<ResourceGroup> = client
        .list(
            &format!("/subscriptions/{SUBSCRIPTION}/resourcegroups"),
            api_version::RESOURCES,
        )
        .await
        .unwrap();
    assert_eq!(groups.len(), 1);
    let resources: Vec<GenericResource> = client
        .list(
            &format!("/subscriptions/{SUBSCRIPTION}/resources"),
            api_version::RESOURCES,
        )
        .await
        .unwrap();
    assert_eq!(resources, Vec::new());
}
