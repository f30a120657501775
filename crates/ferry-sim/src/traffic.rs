//! Traffic that follows a public IP: while a load balancer's frontend holds an IP and has rules
//! whose Service names a backend, the simulator listens on `{ip}:{frontend port}` and copies each
//! connection's bytes both ways to that backend. When the frontend goes, the listener closes
//! (and its connections with it, as a removed frontend drops its flows); when another load
//! balancer's frontend takes the IP, new connections go to its backend.
//!
//! The table of what should listen comes from the world each tick of the cloud controllers
//! (`World::forwarding_table`); this module only opens, repoints and closes listeners.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};

use tokio::sync::watch;

use crate::world::ForwardingTable;

/// One listening address: where its connections go now, and its stop signal.
struct Listener {
    backend: watch::Sender<SocketAddr>,
    stop: watch::Sender<bool>,
}

/// The listeners the table asks for.
#[derive(Default)]
pub(crate) struct Forwarder {
    listeners: HashMap<SocketAddrV4, Listener>,
    /// Why an address could not be listened on, kept until it can.
    pub(crate) failures: HashMap<SocketAddrV4, String>,
}

impl Forwarder {
    /// Opens, repoints and closes listeners so that they are what `table` says.
    pub(crate) fn apply(&mut self, table: &ForwardingTable) {
        self.listeners.retain(|address, listener| {
            let wanted = table.contains_key(address);
            if !wanted {
                let _ = listener.stop.send(true);
            }
            wanted
        });
        self.failures
            .retain(|address, _| table.contains_key(address));
        for (address, backend) in table {
            if let Some(listener) = self.listeners.get(address) {
                if *listener.backend.borrow() != *backend {
                    let _ = listener.backend.send(*backend);
                }
                continue;
            }
            match listen(*address, *backend) {
                Ok(listener) => {
                    self.failures.remove(address);
                    self.listeners.insert(*address, listener);
                }
                Err(error) => {
                    self.failures.insert(*address, error.to_string());
                }
            }
        }
    }

    pub(crate) fn stop_all(&mut self) {
        for (_, listener) in self.listeners.drain() {
            let _ = listener.stop.send(true);
        }
    }
}

fn listen(address: SocketAddrV4, backend: SocketAddr) -> std::io::Result<Listener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (backend_sender, backend_receiver) = watch::channel(backend);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let mut loop_stopped = stopped.clone();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = loop_stopped.wait_for(|stopped| *stopped) => return,
            };
            let Ok((client, _)) = accepted else { continue };
            let backend = *backend_receiver.borrow();
            let mut connection_stopped = stopped.clone();
            tokio::spawn(async move {
                let Ok(mut upstream) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let mut client = client;
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    _ = connection_stopped.wait_for(|stopped| *stopped) => {}
                }
            });
        }
    });
    Ok(Listener {
        backend: backend_sender,
        stop,
    })
}
