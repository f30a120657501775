//! Group commit: steps that change the same thing at about the same time share one ARM
//! operation.
//!
//! A failover detaches, moves and attaches the four disks of one VM at the same moment, but
//! ARM takes one update of a VM at a time and a move locks both resource groups: one operation
//! per disk would run one after another (four 30-second detaches, four 3-minute moves). Here
//! each change joins its key's queue (a VM, or a pair of resource groups); after a short
//! gathering pause, whichever step gets the key's turn first sends every queued change in one
//! operation and hands each step its own result. A change that arrives while an operation runs
//! goes in the next one. Results are per change, so one bad disk does not fail the others
//! where ARM can tell them apart.
//!
//! Every step whose change an operation carries records that operation (through its own
//! `record` callback) as soon as ARM accepts it, as it would its own: an apply killed in the
//! middle resumes each of those steps by polling the operation, never by sending it again.
//!
//! The step that sends the operation may be cancelled (a timeout, a second Ctrl-C): its
//! unfinished changes then go back to the queue for the next step that takes the turn, and a
//! cancelled step's own change leaves the queue with it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a change waits for others to join it before its operation is sent: long enough
/// for steps that become ready together (the detaches right after a fence) to arrive, short
/// beside any ARM operation.
pub(crate) const GATHER: Duration = Duration::from_millis(50);

/// Queues of changes by key.
pub(crate) struct Batches<C, R> {
    queues: Mutex<HashMap<String, Arc<Queue<C, R>>>>,
    gather: Duration,
}

impl<C, R> std::fmt::Debug for Batches<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("gather", &self.gather)
            .finish_non_exhaustive()
    }
}

impl<C, R> Default for Batches<C, R> {
    fn default() -> Self {
        Self {
            queues: Mutex::default(),
            gather: GATHER,
        }
    }
}

struct Queue<C, R> {
    /// Held by the step that sends this key's operation; one operation per key at a time.
    turn: tokio::sync::Mutex<()>,
    waiting: Mutex<Waiting<C, R>>,
    /// Wakes the steps waiting for their turn when an operation carrying their change starts.
    recorded: tokio::sync::Notify,
}

struct Waiting<C, R> {
    next_ticket: u64,
    pending: Vec<(u64, C)>,
    results: HashMap<u64, R>,
    /// Operations started for a waiting step, for it to record.
    operations: HashMap<u64, Vec<String>>,
}

impl<C, R> Queue<C, R> {
    fn waiting(&self) -> MutexGuard<'_, Waiting<C, R>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<C, R> Batches<C, R> {
    fn queue(&self, key: &str) -> Arc<Queue<C, R>> {
        self.queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(key.to_ascii_lowercase())
            .or_insert_with(|| {
                Arc::new(Queue {
                    turn: tokio::sync::Mutex::new(()),
                    waiting: Mutex::new(Waiting {
                        next_ticket: 0,
                        pending: Vec::new(),
                        results: HashMap::new(),
                        operations: HashMap::new(),
                    }),
                    recorded: tokio::sync::Notify::new(),
                })
            })
            .clone()
    }

    /// Queues `change` under `key` and returns its result. When this step is the one to send
    /// the operation, `send` gets every queued change (this one among them) and a
    /// [`Recorder`] to hand each operation it starts to the other steps, and must return one
    /// result per change, in the same order. While it waits, this step passes the operations
    /// started for it to `record`.
    pub(crate) async fn submit<F, Fut>(
        &self,
        key: &str,
        change: C,
        record: &(dyn Fn(String) + Send + Sync),
        send: F,
    ) -> R
    where
        C: Clone,
        F: FnOnce(Vec<C>, Recorder<C, R>) -> Fut,
        Fut: Future<Output = Vec<R>>,
    {
        let queue = self.queue(key);
        let ticket = {
            let mut waiting = queue.waiting();
            let ticket = waiting.next_ticket;
            waiting.next_ticket += 1;
            waiting.pending.push((ticket, change));
            ticket
        };
        let mut mine = Ticket {
            queue: &queue,
            ticket: Some(ticket),
        };
        tokio::time::sleep(self.gather).await;
        loop {
            let turn = {
                let recorded = queue.recorded.notified();
                tokio::pin!(recorded);
                recorded.as_mut().enable();
                let operations = queue.waiting().operations.remove(&ticket);
                for operation in operations.into_iter().flatten() {
                    record(operation);
                }
                tokio::select! {
                    turn = queue.turn.lock() => turn,
                    () = recorded => continue,
                }
            };
            let (operations, result, batch) = {
                let mut waiting = queue.waiting();
                let operations = waiting.operations.remove(&ticket);
                match waiting.results.remove(&ticket) {
                    Some(result) => (operations, Some(result), Vec::new()),
                    None => (operations, None, std::mem::take(&mut waiting.pending)),
                }
            };
            // Recorded outside the queue's lock: recording writes the journal.
            operations.into_iter().flatten().for_each(record);
            if let Some(result) = result {
                mine.ticket = None;
                return result;
            }
            if batch.iter().all(|(queued, _)| *queued != ticket) {
                // Neither answered nor queued: only a bug could get here. Put the batch back
                // and let a step that owns one of its changes send it.
                queue.waiting().pending.extend(batch);
                drop(turn);
                tokio::time::sleep(self.gather).await;
                continue;
            }
            let tickets: Vec<u64> = batch.iter().map(|(queued, _)| *queued).collect();
            let changes: Vec<C> = batch.iter().map(|(_, change)| change.clone()).collect();
            let recorder = Recorder {
                queue: queue.clone(),
                others: tickets
                    .iter()
                    .copied()
                    .filter(|queued| *queued != ticket)
                    .collect(),
            };
            let mut unsent = Unsent {
                queue: &queue,
                batch,
            };
            let results = send(changes, recorder).await;
            unsent.batch.clear();
            let mut waiting = queue.waiting();
            let mut own = None;
            for (queued, result) in tickets.into_iter().zip(results) {
                if queued == ticket {
                    own = Some(result);
                } else {
                    waiting.results.insert(queued, result);
                }
            }
            mine.ticket = None;
            let Some(own) = own else {
                unreachable!("`send` returns one result per change it is given");
            };
            return own;
        }
    }
}

/// Hands an operation that carries several steps' changes to the steps that did not send it.
pub(crate) struct Recorder<C, R> {
    queue: Arc<Queue<C, R>>,
    others: Vec<u64>,
}

impl<C, R> Recorder<C, R> {
    pub(crate) fn record(&self, operation: &str) {
        if self.others.is_empty() {
            return;
        }
        let mut waiting = self.queue.waiting();
        for ticket in &self.others {
            waiting
                .operations
                .entry(*ticket)
                .or_default()
                .push(operation.to_owned());
        }
        drop(waiting);
        self.queue.recorded.notify_waiters();
    }
}

/// The changes of an operation that a cancelled step was about to send, or sending: back to
/// the queue, for the next step that takes the turn.
struct Unsent<'a, C, R> {
    queue: &'a Queue<C, R>,
    batch: Vec<(u64, C)>,
}

impl<C, R> Drop for Unsent<'_, C, R> {
    fn drop(&mut self) {
        if !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            self.queue.waiting().pending.extend(batch);
        }
    }
}

/// A step's place in its queue; a cancelled step takes its change (or its unread result)
/// away with it.
struct Ticket<'a, C, R> {
    queue: &'a Queue<C, R>,
    ticket: Option<u64>,
}

impl<C, R> Drop for Ticket<'_, C, R> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket {
            let mut waiting = self.queue.waiting();
            waiting.pending.retain(|(queued, _)| *queued != ticket);
            waiting.results.remove(&ticket);
            waiting.operations.remove(&ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sent = Arc<Mutex<Vec<Vec<u32>>>>;

    /// Sends a batch: keeps it in `sent`, starts an operation named after it and hands it to
    /// the other steps, takes `takes` of (paused) time, answers each change doubled.
    async fn send(
        sent: Sent,
        changes: Vec<u32>,
        recorder: Recorder<u32, u32>,
        takes: Duration,
    ) -> Vec<u32> {
        sent.lock().unwrap().push(changes.clone());
        recorder.record(&format!("operation {changes:?}"));
        tokio::time::sleep(takes).await;
        changes.into_iter().map(|change| change * 2).collect()
    }

    fn ignore(_: String) {}

    #[tokio::test(start_paused = true)]
    async fn changes_that_arrive_together_share_one_operation_and_each_gets_its_own_result() {
        let batches = Arc::new(Batches::<u32, u32>::default());
        let sent: Sent = Arc::default();
        let steps: Vec<_> = (1..=4)
            .map(|change| {
                let (batches, sent) = (batches.clone(), sent.clone());
                tokio::spawn(async move {
                    batches
                        .submit("vm1", change, &ignore, |changes, recorder| {
                            send(sent, changes, recorder, Duration::from_secs(30))
                        })
                        .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for step in steps {
            results.push(step.await.unwrap());
        }
        assert_eq!(results, vec![2, 4, 6, 8]);
        assert_eq!(*sent.lock().unwrap(), vec![vec![1, 2, 3, 4]]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_that_arrives_during_an_operation_goes_in_the_next_and_keys_are_separate() {
        let batches = Arc::new(Batches::<u32, u32>::default());
        let sent: Sent = Arc::default();
        let submit = |key: &'static str, change: u32, after: Duration| {
            let (batches, sent) = (batches.clone(), sent.clone());
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                batches
                    .submit(key, change, &ignore, |changes, recorder| {
                        send(sent, changes, recorder, Duration::from_secs(30))
                    })
                    .await
            })
        };
        let first = submit("vm1", 1, Duration::ZERO);
        let other_vm = submit("vm2", 7, Duration::ZERO);
        let late = submit("vm1", 2, Duration::from_secs(1));
        let later = submit("vm1", 3, Duration::from_secs(2));
        assert_eq!(first.await.unwrap(), 2);
        assert_eq!(other_vm.await.unwrap(), 14);
        assert_eq!(late.await.unwrap(), 4);
        assert_eq!(later.await.unwrap(), 6);
        let mut sent = sent.lock().unwrap().clone();
        sent.sort();
        assert_eq!(sent, vec![vec![1], vec![2, 3], vec![7]]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_sender_hands_the_others_changes_on_and_takes_its_own_away() {
        let batches = Arc::new(Batches::<u32, u32>::default());
        let sent: Sent = Arc::default();
        let submit = |change: u32, after: Duration| {
            let (batches, sent) = (batches.clone(), sent.clone());
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                batches
                    .submit("vm1", change, &ignore, |changes, recorder| {
                        send(sent, changes, recorder, Duration::from_secs(30))
                    })
                    .await
            })
        };
        // Step 1 gathers first, so it takes the turn and sends all three changes...
        let first = submit(1, Duration::ZERO);
        let second = submit(2, Duration::from_millis(10));
        let third = submit(3, Duration::from_millis(10));
        tokio::time::sleep(GATHER + Duration::from_secs(1)).await;
        assert_eq!(*sent.lock().unwrap(), vec![vec![1, 2, 3]]);
        // ...and is cancelled in the middle of the operation.
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(second.await.unwrap(), 4);
        assert_eq!(third.await.unwrap(), 6);
        assert_eq!(
            *sent.lock().unwrap(),
            vec![vec![1, 2, 3], vec![2, 3]],
            "the others' changes are sent again, the cancelled step's is not"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_cancelled_while_it_waits_takes_its_change_away() {
        let batches = Arc::new(Batches::<u32, u32>::default());
        let sent: Sent = Arc::default();
        let submit = |change: u32| {
            let (batches, sent) = (batches.clone(), sent.clone());
            tokio::spawn(async move {
                batches
                    .submit("vm1", change, &ignore, |changes, recorder| {
                        send(sent, changes, recorder, Duration::from_secs(30))
                    })
                    .await
            })
        };
        let first = submit(1);
        let cancelled = submit(2);
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancelled.abort();
        assert_eq!(first.await.unwrap(), 2);
        assert_eq!(*sent.lock().unwrap(), vec![vec![1]]);
    }

    #[tokio::test(start_paused = true)]
    async fn each_step_records_the_operation_that_carries_its_change_while_it_runs() {
        let batches = Arc::new(Batches::<u32, u32>::default());
        let sent: Sent = Arc::default();
        let records: Arc<Mutex<Vec<(u32, String)>>> = Arc::default();
        let steps: Vec<_> = (1..=3)
            .map(|change| {
                let (batches, sent, records) = (batches.clone(), sent.clone(), records.clone());
                tokio::spawn(async move {
                    let record =
                        move |operation: String| records.lock().unwrap().push((change, operation));
                    batches
                        .submit("vm1", change, &record, |changes, recorder| {
                            send(sent, changes, recorder, Duration::from_secs(30))
                        })
                        .await
                })
            })
            .collect();
        // In the middle of the operation, the steps that did not send it have recorded it.
        tokio::time::sleep(GATHER + Duration::from_secs(1)).await;
        let mut recorded = records.lock().unwrap().clone();
        recorded.sort();
        assert_eq!(
            recorded,
            [
                (2, "operation [1, 2, 3]".to_owned()),
                (3, "operation [1, 2, 3]".to_owned())
            ]
        );
        for step in steps {
            step.await.unwrap();
        }
        assert_eq!(records.lock().unwrap().len(), 2, "recorded once each");
    }
}
