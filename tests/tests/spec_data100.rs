//! The example spec that the whole project is built around must load without a problem.

use std::collections::BTreeMap;
use std::path::Path;

use ferry_core::{Kind, ResourceAddress};
use ferry_spec::{DependencyVia, FailoverMode, LoadOptions, StateConfig, load};

fn data100() -> ferry_spec::Spec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
    let options = LoadOptions {
        variables: BTreeMap::new(),
        environment: BTreeMap::new(),
    };
    match load(&path, &options, &ferry_providers::rule_book()) {
        Ok(spec) => spec,
        Err(errors) => panic!("{}", errors.render(false)),
    }
}

#[test]
fn data100_loads_without_problems() {
    let spec = data100();
    assert_eq!(spec.deployment.name, "data100");
    assert_eq!(spec.deployment.location, "westeurope");
    assert_eq!(spec.failover.mode, FailoverMode::Automatic);
    assert_eq!(
        spec.failover.triggers,
        [ResourceAddress::new(Kind::AksCluster, "hub")]
    );
    assert!(matches!(&spec.state, StateConfig::Local { path } if path.ends_with(".ferry")));
    assert!(spec.zones.contains_key("data100.example.org"));
    assert_eq!(spec.resources.len(), 16);

    let vm = &spec.resources[&"vm.nfs".parse().unwrap()];
    assert!(
        vm.str_field("ssh_public_key")
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );
    let staging = &spec.resources[&"dns_record.staging".parse().unwrap()];
    assert_eq!(staging.str_field("zone"), Some("data100.example.org"));
    assert_eq!(
        staging.field("values").unwrap(),
        &serde_json::json!(["${public_ip.ingress.address}"])
    );
    let group = &spec.resources[&"resource_group.main".parse().unwrap()];
    assert_eq!(group.str_field("name"), Some("data100-g${generation}"));
}

#[test]
fn data100_dependencies_say_why() {
    let spec = data100();
    let rendered: Vec<String> = spec
        .dependencies(&"dns_record.staging".parse().unwrap())
        .iter()
        .map(|dependency| match &dependency.via {
            DependencyVia::Reference { field } => format!("{} via {field}", dependency.address),
            DependencyVia::Interpolation { field, output } => {
                format!("{} via ${{..{output}}} in {field}", dependency.address)
            }
            DependencyVia::DependsOn => format!("{} via depends_on", dependency.address),
        })
        .collect();
    assert_eq!(
        rendered,
        [
            "public_ip.ingress via ${..address} in values[0]",
            "hook.staging_hub via depends_on",
        ]
    );
    let pool = spec.dependencies(&"zfs_pool.home".parse().unwrap());
    assert_eq!(pool.len(), 5);
    assert_eq!(
        spec.location_of(&"zfs_pool.home".parse().unwrap()).unwrap(),
        format!(
            "{}:35:1",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../specs/data100/storage.toml")
                .display()
        )
    );
}

/// `specs/data100/warm` is data100 with a warm standby: its main.toml is the cold one's with
/// the standby's lines added and a header, its other files are the cold spec's own (links), so
/// that the two never drift apart; only the hubs are split into an idle and an active part.
#[test]
fn the_warm_variant_is_data100_with_a_standby_and_nothing_else() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
    let cold = std::fs::read_to_string(folder.join("main.toml")).unwrap();
    let warm = std::fs::read_to_string(folder.join("warm/main.toml")).unwrap();
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.starts_with("standby ="))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(settings(&warm), settings(&cold));
    assert!(warm.contains("\nstandby = \"warm\"\n"));
    for linked in ["azure.toml", "storage.toml", "hooks"] {
        let link = std::fs::read_link(folder.join("warm").join(linked)).unwrap();
        assert_eq!(link, Path::new("..").join(linked));
    }

    let options = LoadOptions::default();
    let spec = load(
        &folder.join("warm"),
        &options,
        &ferry_providers::rule_book(),
    )
    .unwrap_or_else(|errors| panic!("{}", errors.render(false)));
    assert_eq!(spec.failover.standby, ferry_spec::Standby::Warm);
    assert_eq!(spec.resources.len(), 18);
    let standby: Vec<String> = spec
        .standby_resources()
        .iter()
        .filter(|address| address.kind == Kind::Hook)
        .map(ToString::to_string)
        .collect();
    assert_eq!(standby, ["hook.prod_hub", "hook.staging_hub"]);
}

/// `specs/data100/hot` is data100 with a hot standby: main.toml is the cold one's with the
/// standby's line; azure.toml the cold one's with the ingress's static IP in place of a public
/// IP per generation; service.toml the warm spec's (hubs deployed idle ahead) with the hubs on
/// that static IP; and storage.toml the cold one's plus the replica's four disks and the
/// pool's three replica fields.
#[test]
fn the_hot_variant_is_data100_with_a_replica_and_nothing_else() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
    let read = |path: &str| std::fs::read_to_string(folder.join(path)).unwrap();
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.starts_with("standby ="))
            .map(str::to_owned)
            .collect()
    };
    let hot = read("hot/main.toml");
    assert_eq!(settings(&hot), settings(&read("main.toml")));
    assert!(hot.contains("\nstandby = \"hot\"\n"));
    let link = std::fs::read_link(folder.join("hot/hooks")).unwrap();
    assert_eq!(link, Path::new("../hooks"));
    // The static IP in place of the generation's public IP, and nothing else.
    let table = |text: &str, header: &str| -> Vec<String> {
        let lines = settings(text);
        let start = lines.iter().position(|line| line == header);
        start
            .map(|start| {
                lines[start..]
                    .iter()
                    .take_while(|line| !line.is_empty())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let cold_azure = read("azure.toml");
    let hot_azure = read("hot/azure.toml");
    let without = |text: &str, header: &str| -> Vec<String> {
        let dropped = table(text, header);
        let mut lines = settings(text);
        if let Some(start) = lines.iter().position(|line| *line == dropped[0]) {
            lines.drain(start..start + dropped.len());
        }
        lines.into_iter().filter(|line| !line.is_empty()).collect()
    };
    assert_eq!(
        without(&hot_azure, "[static_ip.ingress]"),
        without(&cold_azure, "[public_ip.ingress]")
    );
    assert_eq!(
        table(&hot_azure, "[static_ip.ingress]"),
        [
            "[static_ip.ingress]",
            "name = \"data100-ingress\"",
            "resource_group = \"data100-shared\"",
            "service = \"hub-ingress/proxy-public\"",
        ]
    );
    // The hubs' service: the warm one's, on the static IP (idle releases ask for none).
    let warm_service = read("warm/service.toml");
    let hot_service = read("hot/service.toml");
    let on_static_ip = |line: &str| -> String {
        line.replace("${public_ip.ingress.address}", "${static_ip.ingress.address}")
            .replace(
                ", INGRESS_IP_NAME = \"${static_ip.ingress.name}\", INGRESS_IP_GROUP = \"${static_ip.ingress.resource_group}\"",
                "",
            )
            .replace(
                ", INGRESS_IP = \"${static_ip.ingress.address}\", HUB_HOST",
                ", HUB_HOST",
            )
    };
    let plain = |text: &str| -> Vec<String> {
        settings(text)
            .iter()
            .map(|line| on_static_ip(line))
            .collect()
    };
    let warm_plain: Vec<String> = settings(&warm_service)
        .iter()
        .map(|line| on_static_ip(line))
        .collect();
    assert_eq!(plain(&hot_service), warm_plain);
    assert!(!hot_service.contains("public_ip.ingress"));
    let extra: Vec<String> = {
        let cold: Vec<String> = settings(&read("storage.toml"));
        let mut left = cold.into_iter().peekable();
        settings(&read("hot/storage.toml"))
            .into_iter()
            .filter(|line| {
                if left.peek() == Some(line) {
                    left.next();
                    false
                } else {
                    true
                }
            })
            .filter(|line| !line.is_empty())
            .collect()
    };
    let replica_lines = extra
        .iter()
        .filter(|line| line.starts_with("replica_"))
        .count();
    assert_eq!(replica_lines, 3, "{extra:?}");
    assert_eq!(
        extra
            .iter()
            .filter(|line| line.starts_with("[disk.replica"))
            .count(),
        4,
        "{extra:?}"
    );

    let spec = load(
        &folder.join("hot"),
        &LoadOptions::default(),
        &ferry_providers::rule_book(),
    )
    .unwrap_or_else(|errors| panic!("{}", errors.render(false)));
    assert_eq!(spec.failover.standby, ferry_spec::Standby::Hot);
    assert_eq!(spec.resources.len(), 22);
    assert_eq!(spec.hot_pools().count(), 1);
    assert!(
        spec.resources
            .keys()
            .any(|address| address.to_string() == "static_ip.ingress")
    );
}
