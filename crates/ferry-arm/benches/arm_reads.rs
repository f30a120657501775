//! 1,000 resource reads against the simulator with 20 ms latency each, at concurrency 32;
//! the ideal is ceil(1000/32) x 20 ms = 640 ms.

use std::time::Duration;

use futures_util::StreamExt;

const READS: usize = 1000;
const CONCURRENCY: usize = 32;
const LATENCY: Duration = Duration::from_millis(20);
const RESOURCES: usize = 50;

fn main() {
    divan::main();
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn thousand_reads_at_concurrency_32(bencher: divan::Bencher) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let folder = tempfile::tempdir().unwrap();
    let (simulator, client, ids) = runtime.block_on(async {
        let mut config = ferry_sim::SimulatorConfig::for_tests(folder.path().join("sim"));
        config.latency = Duration::ZERO;
        let simulator = ferry_sim::start(config).await.unwrap();
        let mut ids = Vec::new();
        for index in 0..RESOURCES {
            let id = format!("/subscriptions/s/resourceGroups/bench/providers/Microsoft.Network/publicIPAddresses/ip{index}");
            simulator.seed(&id, serde_json::json!({"location": "westeurope"})).unwrap();
            ids.push(id);
        }
        let mut client_config = ferry_arm::ArmClientConfig::simulator(
            ferry_arm::Url::parse(simulator.endpoint()).unwrap(),
            simulator.ca_file().to_path_buf(),
        );
        client_config.credential = ferry_arm::CredentialChoice::StaticToken(ferry_core::Secret::new("bench-token"));
        let client = ferry_arm::ArmClient::new(client_config).unwrap();
        // Warm the connection pool and token once, outside the measurement.
        let _: ferry_arm::Fetched<serde_json::Value> = client.get(&ids[0], ferry_arm::api_version::PUBLIC_IP).await.unwrap();
        simulator.set_latency(LATENCY);
        (simulator, client, ids)
    });
    bencher.bench_local(|| {
        runtime.block_on(async {
            let reads = futures_util::stream::iter(0..READS)
                .map(|index| {
                    let client = client.clone();
                    let id = ids[index % RESOURCES].clone();
                    async move {
                        client
                            .get::<ferry_arm::models::PublicIpAddress>(
                                &id,
                                ferry_arm::api_version::PUBLIC_IP,
                            )
                            .await
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            assert!(reads.iter().all(Result::is_ok));
        })
    });
    drop(simulator);
}
