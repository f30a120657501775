//! The clock of the clusters' cloud controllers and of the traffic that follows public IPs: a
//! tick every 5 s of simulated time (at the simulator's time scale, and at least every 50 ms of
//! real time), each running every up cluster's controller (`world/cloud_controller.rs`), then
//! opening and closing the listeners the load balancers ask for (`traffic`).

use std::time::Duration;

use crate::server::{lock, schedule_completion};
use crate::traffic::Forwarder;
use crate::world::SharedWorld;

/// AKS's cloud controller reconciles a Service about every 5 s.
const TICK: Duration = Duration::from_secs(5);
const LONGEST_TICK: Duration = Duration::from_millis(50);
const SHORTEST_TICK: Duration = Duration::from_millis(1);

pub(crate) fn tick_for(time_scale: f64) -> Duration {
    TICK.mul_f64(time_scale.max(0.0))
        .clamp(SHORTEST_TICK, LONGEST_TICK)
}

pub(crate) async fn run(world: SharedWorld, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let tick = tick_for(lock(&world).time_scale());
    let mut forwarder = Forwarder::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => break,
        }
        let (started, table) = {
            let mut world = lock(&world);
            let started = world.run_cloud_controllers();
            (started, world.forwarding_table())
        };
        for (operation, after) in started {
            schedule_completion(world.clone(), operation, after);
        }
        forwarder.apply(&table);
        lock(&world).set_forwarding_failures(&forwarder.failures);
    }
    forwarder.stop_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_is_five_simulated_seconds_within_real_bounds() {
        assert_eq!(tick_for(1.0), LONGEST_TICK);
        assert_eq!(tick_for(0.001), Duration::from_millis(5));
        assert_eq!(tick_for(0.0), SHORTEST_TICK);
    }
}
