//! Crash-safe resume on real servers (safety invariant 9 of ARCHITECTURE.md): the data100 failover through the
//! `ferry` binary against the ARM simulator, BIND, sshd and zfs-fuse, killed with SIGKILL at
//! every step boundary of its plan, then recovered as the README says: `ferry force-unlock`
//! of the dead holder's lock and `ferry apply` again.
//!
//! The kill points are generated from the plan, not picked by hand: a reference failover
//! (applied whole, from `ferry plan -o`) gives the steps in plan order, which of them journal
//! a resume token (an Azure long-running operation, the DNS update's wait for the old TTL), and
//! how long each took. Every step then yields two boundaries: while it runs (once its
//! resume token is journaled, or, for a step that journals none, half its reference time after
//! the journal recorded its start, at most 150 ms) and right after it ends (once the journal
//! records its end). One more case kills the resume itself. Each case is one failover of the
//! same world, killed once: generation N fails over to N+1, so generation 1 is built once per
//! test and every case costs one failover and its recovery.
//!
//! After each case the outcome is checked by tools that are not ferry: every file's checksum
//! matches, `dig` answers the new address, `curl` verifies TLS; the pool's own history (`zpool
//! history`) shows it imported exactly once, on the new VM's disks, and exported at most once
//! before; the simulator's record shows every disk moved once and in order, the old VM
//! deallocated once, the new cluster created once, the old group deleted once and not one
//! changing request refused, so nothing was sent twice where Azure would reject or duplicate
//! it; and the journal shows no finished step run again. zfs-fuse must already run (`cargo
//! xtask test` starts it).
//!
//! One more test runs the kills against the strict simulator: ARM's throttling at Azure's sizes
//! all along, and another writer on the NFS VMs and the AKS cluster that refuses ferry's first
//! write to each, armed again before every apply. It kills at both boundaries of the steps that
//! meet that writer, and checks too that the refusals happened and that no request was
//! throttled more than three times in a row.

mod real_servers;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ferry_core::Action;
use ferry_sim::{ArmThrottling, Fault, SimEvent};
use real_servers::*;
use serde_json::Value;

/// When, in one step's life, the failover is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// While the step runs.
    While,
    /// Right after the journal records its end.
    After,
}

/// One generated kill point: a step of the failover, named without its generations
/// (`vm.nfs@old:fence`, `aks_cluster.hub@new:create`, `disk.home0:move`), and a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Boundary {
    step: String,
    moment: Moment,
}

impl std::fmt::Display for Boundary {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.moment {
            Moment::While => write!(formatter, "while {} runs", self.step),
            Moment::After => write!(formatter, "right after {} ends", self.step),
        }
    }
}

/// A step id with its generations written `old` and `new`, so that it names the same step in
/// every failover.
fn generic(id: &str, from: u32, to: u32) -> String {
    id.replace(&format!("@g{from}:"), "@old:")
        .replace(&format!("@g{to}:"), "@new:")
}

/// The id of a generic step in the failover from `from` to `to`.
fn concrete(step: &str, from: u32, to: u32) -> String {
    step.replace("@old:", &format!("@g{from}:"))
        .replace("@new:", &format!("@g{to}:"))
}

/// What the reference failover showed of one step.
#[derive(Debug, Clone)]
struct StepReference {
    action: Action,
    /// It journaled a resume token while it ran.
    records_resume_token: bool,
    /// From its start to its end in the journal, as the watcher saw them.
    took: Duration,
}

/// The failover's steps in plan order, as the reference failover ran them.
#[derive(Debug, Clone)]
struct Reference {
    steps: Vec<(String, StepReference)>,
}

impl Reference {
    fn step(&self, step: &str) -> &StepReference {
        &self
            .steps
            .iter()
            .find(|(id, _)| id == step)
            .unwrap_or_else(|| panic!("{step} is not a step of the reference failover"))
            .1
    }

    /// Both boundaries of every step of the plan whose action `wanted` selects, in plan
    /// order: each disk's detach, move and attach too, although the disks share Azure
    /// operations, since each journals its own end.
    fn boundaries(&self, wanted: impl Fn(Action) -> bool) -> Vec<Boundary> {
        self.steps
            .iter()
            .filter(|(_, step)| wanted(step.action))
            .flat_map(|(id, _)| {
                [Moment::While, Moment::After].map(|moment| Boundary {
                    step: id.clone(),
                    moment,
                })
            })
            .collect()
    }

    /// What the journal must show before a kill at `boundary`, and how long to wait then.
    fn trigger(&self, boundary: &Boundary, from: u32, to: u32) -> Trigger {
        let step = concrete(&boundary.step, from, to);
        let reference = self.step(&boundary.step);
        match boundary.moment {
            Moment::After => Trigger::Finished(step),
            Moment::While if reference.records_resume_token => Trigger::ResumeTokenRecorded(step),
            Moment::While => {
                Trigger::Started(step, (reference.took / 2).min(Duration::from_millis(150)))
            }
        }
    }
}

/// A journal record the watcher waits for before it kills.
#[derive(Debug, Clone)]
enum Trigger {
    /// This long after the step's start was journaled.
    Started(String, Duration),
    /// Once the step journaled a resume token (the request was accepted and runs, or the wait
    /// it owes is recorded).
    ResumeTokenRecorded(String),
    /// Once the step's end was journaled.
    Finished(String),
}

impl Trigger {
    fn step(&self) -> &str {
        match self {
            Trigger::Started(step, _)
            | Trigger::ResumeTokenRecorded(step)
            | Trigger::Finished(step) => step,
        }
    }

    /// When the kill is due, given the records seen so far; `None` while it is not.
    fn due(&self, seen: &[Seen]) -> Option<Instant> {
        let first = |event: &str| {
            seen.iter()
                .find(|seen| seen.record["event"] == event && seen.record["step"] == self.step())
                .map(|seen| seen.at)
        };
        match self {
            Trigger::Started(_, wait) => first("step_started").map(|at| at + *wait),
            Trigger::ResumeTokenRecorded(_) => first("resume_token_recorded"),
            Trigger::Finished(_) => first("step_finished"),
        }
    }
}

/// A journal record and when the watcher first saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    record: Value,
}

/// Reads the records an apply appends to the journal, as it appends them.
struct JournalWatch {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    seen: Vec<Seen>,
}

impl JournalWatch {
    /// Watches what is appended from now on.
    fn from_now(world: &World) -> JournalWatch {
        let path = journal_path(world);
        let offset = std::fs::metadata(&path).map_or(0, |metadata| metadata.len());
        JournalWatch {
            path,
            offset,
            partial: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn poll(&mut self) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return;
        };
        file.seek(SeekFrom::Start(self.offset)).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let at = Instant::now();
        while let Some(end) = self.partial.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            if let Ok(record) = serde_json::from_slice(&line) {
                self.seen.push(Seen { at, record });
            }
        }
    }
}

fn journal_path(world: &World) -> PathBuf {
    world.work.join("data100/.ferry/journal.jsonl")
}

fn journal(world: &World) -> Vec<Value> {
    world.journal_records()
}

/// How a watched apply ended.
#[derive(Debug)]
enum Ending {
    /// Killed with SIGKILL; `step_running` says whether the trigger's step had started and
    /// not ended in the journal at that moment.
    Killed { step_running: bool },
    /// It ended by itself after the trigger was due and before the kill (the last step's end).
    EndedFirst,
}

/// Starts `ferry apply data100` and watches its journal; with a trigger, kills it with SIGKILL
/// once the trigger is due. Returns how it ended and what it journaled.
fn watch_apply(world: &World, what: &str, trigger: Option<&Trigger>) -> (Ending, Vec<Seen>) {
    let log = world.work.join(format!("{}.log", what.replace(' ', "-")));
    let mut child = world
        .command(&["apply", "data100", "--auto-approve"], true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut watch = JournalWatch::from_now(world);
    let started = Instant::now();
    let shown = |log: &Path| std::fs::read_to_string(log).unwrap_or_default();
    loop {
        watch.poll();
        let due = trigger.and_then(|trigger| trigger.due(&watch.seen));
        if let Some(status) = child.try_wait().unwrap() {
            watch.poll();
            match (trigger, due) {
                (None, _) => {
                    assert!(status.success(), "{what}: {status}\n{}", shown(&log));
                    return (Ending::EndedFirst, watch.seen);
                }
                (Some(_), Some(_)) => {
                    assert!(status.success(), "{what}: {status}\n{}", shown(&log));
                    return (Ending::EndedFirst, watch.seen);
                }
                (Some(trigger), None) => panic!(
                    "{what}: the apply ended ({status}) before {trigger:?}:\n{}",
                    shown(&log)
                ),
            }
        }
        if let Some(due) = due
            && Instant::now() >= due
        {
            let step = trigger.unwrap().step();
            let journaled = |event: &str| {
                watch
                    .seen
                    .iter()
                    .any(|seen| seen.record["event"] == event && seen.record["step"] == step)
            };
            let step_running = journaled("step_started") && !journaled("step_finished");
            return match kill(&mut child) {
                Some(status) => {
                    watch.poll();
                    assert!(status.success(), "{what}: {status}\n{}", shown(&log));
                    (Ending::EndedFirst, watch.seen)
                }
                None => {
                    watch.poll();
                    (Ending::Killed { step_running }, watch.seen)
                }
            };
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{what}: {trigger:?} not reached in 300 s:\n{}",
            shown(&log)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGKILL: no handler, no cleanup. `Some` when the apply had already ended by itself.
fn kill(child: &mut Child) -> Option<ExitStatus> {
    if let Some(status) = child.try_wait().unwrap() {
        return Some(status);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

/// One world: generation 1 built with users' files, and the failovers done in it so far.
struct Chain {
    /// `None` only while a new world replaces the old one.
    world: Option<World>,
    files: Vec<PathBuf>,
    sums: BTreeMap<PathBuf, String>,
    /// The generation that serves.
    serving: u32,
    /// How many kills landed while their step ran, of the `While` boundaries tried.
    while_running: (usize, usize),
    started: Instant,
    strictness: Strictness,
    /// What the strict simulator refused over the chain's failovers, for the summary.
    refused: Refused,
}

/// How hostile the simulator is beyond its default strictness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// The simulator as the other cases use it: no throttling, no one else writing.
    Default,
    /// ARM's throttling at Azure's sizes (`ArmThrottling::azure`) from generation 1 on, and
    /// another writer on the NFS VMs and the AKS cluster armed before every apply of a
    /// failover (the reference, each killed one and the one that finishes): it starts at the
    /// first write ferry sends to each, which it thus refuses as ARM refuses concurrent
    /// writes, and runs five Azure minutes.
    AnotherWriterAndThrottling,
}

/// Refusals the strict simulator answered over a chain's failovers.
#[derive(Debug, Clone, Copy, Default)]
struct Refused {
    /// Every ARM request, answered or refused.
    requests: usize,
    /// `409 ConflictingConcurrentWriteNotAllowed` on the NFS VMs and their disks.
    concurrent_writes_on_the_nfs_vms: usize,
    /// `409 OperationNotAllowed` on the AKS cluster.
    concurrent_writes_on_the_cluster: usize,
    /// `412 PreconditionFailed` on the NFS VMs: the other writer changed the ETag ferry read.
    stale_etags: usize,
    /// `429 SubscriptionRequestsThrottled`.
    throttled: usize,
    /// The most times one request (method and path) was throttled in a row.
    most_throttled_in_a_row: usize,
}

/// Where one failover's records start, to check only what it did.
struct Marks {
    history: usize,
    events: usize,
    journal: usize,
}

impl Chain {
    async fn start(strictness: Strictness) -> Chain {
        let world = World::start_with(WorldSettings {
            time_scale: SMALLEST_TIME_SCALE,
            record_ttl_with_wait: Some(1),
            ..WorldSettings::default()
        })
        .await;
        // Timed from here: the wait for the machine's zfs lock is another test's time.
        let started = Instant::now();
        if strictness == Strictness::AnotherWriterAndThrottling {
            world.simulator.set_throttling(Some(ArmThrottling::azure()));
        }
        let (files, sums) = world.build_generation_one();
        Chain {
            world: Some(world),
            files,
            sums,
            serving: 1,
            while_running: (0, 0),
            started,
            strictness,
            refused: Refused::default(),
        }
    }

    /// With another writer, arms it on the failover's two NFS VMs and on the cluster (by
    /// name, so the new generation's and the old one's): each starts at the next write ferry
    /// sends to its resource. Armed again before every apply, so that an apply that resumes
    /// after a kill meets it too; one armed before a kill that came first still waits, and
    /// starts with the new one.
    fn arm_another_writer(&self) {
        if self.strictness != Strictness::AnotherWriterAndThrottling {
            return;
        }
        let (from, to) = (self.serving, self.serving + 1);
        for resource in [
            format!("data100-nfs-g{from}"),
            format!("data100-nfs-g{to}"),
            "data100-hub".to_owned(),
        ] {
            self.world().simulator.inject(Fault::AnotherWriter {
                resource,
                seconds: 300,
                after_seconds: 0,
                at_first_write: true,
            });
        }
    }

    fn world(&self) -> &World {
        self.world.as_ref().expect("a world")
    }

    fn world_mut(&mut self) -> &mut World {
        self.world.as_mut().expect("a world")
    }

    /// Breaks the serving generation's API server and notes where the records stand.
    fn prepare_failover(&mut self) -> Marks {
        let serving = self.serving;
        self.world_mut().serve_ssh_from(serving);
        self.world().break_api_server(self.serving);
        Marks {
            history: zpool_history().len(),
            events: self.world().simulator.events().len(),
            journal: journal(self.world()).len(),
        }
    }

    /// The reference failover: planned with `ferry plan -o`, applied whole and watched.
    fn reference(&mut self) -> Reference {
        let (from, to) = (self.serving, self.serving + 1);
        let marks = self.prepare_failover();
        let plan = self.world().saved_plan("failover.plan", &[]);
        assert_eq!(plan.failover.as_ref().map(|f| f.to_generation), Some(to));
        assert_failover_order(&plan, from, to);
        self.arm_another_writer();
        let (_, seen) = watch_apply(self.world(), "reference failover", None);
        let first = |event: &str, id: &str| {
            seen.iter()
                .find(|seen| seen.record["event"] == event && seen.record["step"] == id)
                .map(|seen| seen.at)
        };
        let steps = plan
            .steps
            .iter()
            .map(|step| {
                let id = &step.id.0;
                let started = first("step_started", id)
                    .unwrap_or_else(|| panic!("reference failover: {id} never started"));
                let finished = first("step_finished", id)
                    .unwrap_or_else(|| panic!("reference failover: {id} never ended"));
                let reference = StepReference {
                    action: step.action,
                    records_resume_token: first("resume_token_recorded", id).is_some(),
                    took: finished.saturating_duration_since(started),
                };
                (generic(id, from, to), reference)
            })
            .collect();
        self.finish_failover("reference failover", &marks, &[]);
        Reference { steps }
    }

    /// One case: the failover killed at `boundary`, then (with `resume_killed_at`) its
    /// resume killed too, then recovered and checked.
    async fn kill_and_recover(
        &mut self,
        reference: &Reference,
        boundary: &Boundary,
        resume_killed_at: Option<&Boundary>,
    ) {
        let (from, to) = (self.serving, self.serving + 1);
        let case = match resume_killed_at {
            None => format!("g{from}→g{to} killed {boundary}"),
            Some(second) => format!("g{from}→g{to} killed {boundary}, its resume {second}"),
        };
        let marks = self.prepare_failover();
        let mut killed_segments = Vec::new();
        let mut kills = vec![boundary];
        kills.extend(resume_killed_at);
        for (index, boundary) in kills.iter().enumerate() {
            let trigger = reference.trigger(boundary, from, to);
            let journal_before = journal(self.world()).len();
            self.arm_another_writer();
            let (ending, _) =
                watch_apply(self.world(), &format!("{case} ({index})"), Some(&trigger));
            let journal_after = journal(self.world()).len();
            match ending {
                Ending::Killed { step_running } => {
                    if boundary.moment == Moment::While {
                        self.while_running.1 += 1;
                        self.while_running.0 += usize::from(step_running);
                    }
                    killed_segments
                        .push((journal_before - marks.journal)..(journal_after - marks.journal));
                    self.world().force_unlock(&case);
                }
                Ending::EndedFirst => {
                    eprintln!("{case}: the apply ended before the kill");
                }
            }
        }
        self.finish_failover(&case, &marks, &killed_segments);
    }

    /// `ferry apply` finishes the failover; then every proof.
    fn finish_failover(&mut self, case: &str, marks: &Marks, killed: &[std::ops::Range<usize>]) {
        let (from, to) = (self.serving, self.serving + 1);
        self.arm_another_writer();
        let resumed = self
            .world()
            .ferry(&["apply", "data100", "--auto-approve"], true);
        let resumed = resumed.expect_code(0, "the apply after the crash");
        // A kill right after the last step may land after the apply journaled its end (and
        // saved the state): the resume then has nothing left to do or record.
        let records = journal(self.world());
        let ended_before_the_kill = killed.last().is_some_and(|segment| {
            records[marks.journal..][segment.clone()]
                .last()
                .is_some_and(|last| last["event"] == "apply_finished" && last["complete"] == true)
        });
        assert!(
            killed.is_empty()
                || resumed.stderr.contains(&format!("Generation {to} serves"))
                || (ended_before_the_kill && resumed.stdout.contains("No changes")),
            "{case}: {}",
            resumed.shown()
        );
        // The law: planning right after a successful apply gives no changes.
        let plan = self
            .world()
            .ferry(&["plan", "data100", "--detailed-exitcode"], true);
        plan.expect_code(0, "ferry plan right after the failover");
        self.world()
            .assert_served_by_tools_from(to, &self.files, &self.sums);
        check_pool_history(case, to, &zpool_history()[marks.history..]);
        let refused = check_simulator(
            case,
            from,
            to,
            &self.world().simulator.events()[marks.events..],
            self.strictness,
        );
        self.refused.concurrent_writes_on_the_nfs_vms += refused.concurrent_writes_on_the_nfs_vms;
        self.refused.concurrent_writes_on_the_cluster += refused.concurrent_writes_on_the_cluster;
        self.refused.requests += refused.requests;
        self.refused.stale_etags += refused.stale_etags;
        self.refused.throttled += refused.throttled;
        self.refused.most_throttled_in_a_row = self
            .refused
            .most_throttled_in_a_row
            .max(refused.most_throttled_in_a_row);
        check_journal(case, &journal(self.world())[marks.journal..], killed);
        self.serving = to;
        eprintln!(
            "{case}: recovered and checked ({:.0?} since the suite started)",
            self.started.elapsed()
        );
    }

    fn summary(&self, what: &str, cases: usize) {
        eprintln!(
            "{what}: {cases} boundaries in {:.0?}; {} of {} `while` kills landed while their step ran",
            self.started.elapsed(),
            self.while_running.0,
            self.while_running.1,
        );
        if self.strictness == Strictness::AnotherWriterAndThrottling {
            eprintln!("{what}: the strict simulator refused {:?}", self.refused);
        }
    }
}

/// Imported exactly once in the failover, from the new VM's device folder, after at most one
/// export: never imported where it already was, never imported on two hosts.
fn check_pool_history(case: &str, to: u32, history: &[String]) {
    let imports: Vec<&String> = history
        .iter()
        .filter(|command| command.starts_with("zpool import"))
        .collect();
    assert_eq!(imports.len(), 1, "{case}: one import: {history:#?}");
    assert!(
        imports[0].contains(&format!("data100-nfs-g{to}/scsi1")),
        "{case}: imported from the new VM's disks: {history:#?}"
    );
    let exports: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, command)| command.starts_with("zpool export"))
        .map(|(index, _)| index)
        .collect();
    let import = history
        .iter()
        .position(|command| command.starts_with("zpool import"))
        .unwrap();
    assert!(
        exports.len() <= 1 && exports.iter().all(|&export| export < import),
        "{case}: exported at most once, before the import: {history:#?}"
    );
}

/// What ARM saw over the killed applies and the one that finished the failover; with the
/// strict simulator, what it refused that ferry waited out.
fn check_simulator(
    case: &str,
    from: u32,
    to: u32,
    events: &[SimEvent],
    strictness: Strictness,
) -> Refused {
    // ARM refuses a change to a group while a move locks it (`ScopeLocked`), and ferry waits
    // and retries: that is the failover's normal course. With the strict simulator, so are a
    // VM's or a disk's write refused while another writer's runs, the cluster's likewise, and
    // a request ARM throttles. Any other refusal of a change would be a request ARM rejects,
    // such as a second move or attach of the same disk.
    let waited_out = |event: &SimEvent| match event.code.as_deref() {
        Some("ScopeLocked") => true,
        Some("ConflictingConcurrentWriteNotAllowed" | "SubscriptionRequestsThrottled") => {
            strictness == Strictness::AnotherWriterAndThrottling
        }
        Some("OperationNotAllowed") => {
            strictness == Strictness::AnotherWriterAndThrottling
                && event.path.contains("/managedClusters/")
        }
        // The other writer's write changed the VM: ferry's `If-Match` with the ETag it read
        // before fails, and it reads the VM again.
        Some("PreconditionFailed") => {
            strictness == Strictness::AnotherWriterAndThrottling
                && event.path.contains("/virtualMachines/")
        }
        _ => false,
    };
    // A request ARM took: it neither failed nor was refused for a retry.
    let accepted = |event: &SimEvent| event.what == "request" && !waited_out(event);
    let count = |wanted: &dyn Fn(&SimEvent) -> bool| events.iter().filter(|e| wanted(e)).count();
    let refused: Vec<&SimEvent> = events
        .iter()
        .filter(|event| {
            event.what == "request"
                && event.method != "GET"
                && (event.outcome.starts_with('4') || event.outcome.starts_with('5'))
                && !waited_out(event)
        })
        .collect();
    assert!(
        refused.is_empty(),
        "{case}: no change refused but for one ferry waits out or reads again for: {refused:#?}"
    );
    // Each disk moved exactly once, whichever request carried it (several disks share one).
    let moves = format!("/resourceGroups/data100-g{from}/moveResources");
    let records = ferry_sim::disk_records(events);
    for disk in DISKS {
        let record = records.get(disk);
        assert!(
            record.is_some_and(|record| record.move_requests.len() == 1 && record.moved.len() == 1),
            "{case}: {disk} moved once: {record:?}\n{events:#?}"
        );
    }
    assert!(
        count(&|event| accepted(event) && event.path.ends_with(&moves)) <= 4,
        "{case}: at most one move request per disk: {events:#?}"
    );
    let deallocate = format!("{}/deallocate", vm_path(from));
    assert_eq!(
        count(&|event| accepted(event) && event.path.ends_with(&deallocate)),
        1,
        "{case}: the fence's deallocation requested once: {events:#?}"
    );
    let cluster = format!(
        "/resourceGroups/data100-g{to}/providers/Microsoft.ContainerService/managedClusters/data100-hub"
    );
    assert_eq!(
        count(&|event| accepted(event) && event.method == "PUT" && event.path.ends_with(&cluster)),
        1,
        "{case}: the new cluster created once: {events:#?}"
    );
    let old_group = format!("/resourceGroups/data100-g{from}");
    assert_eq!(
        count(&|event| accepted(event)
            && event.method == "DELETE"
            && event.path.ends_with(&old_group)),
        1,
        "{case}: the old group deleted once: {events:#?}"
    );
    // No disk leaves the old VM before the fence, none moves before its detach ended, and
    // none reaches the new VM before it moved: the order held across the crash.
    let fenced = events
        .iter()
        .position(|event| {
            event.what == "operation"
                && event.path.ends_with(&deallocate)
                && event.outcome == "Succeeded"
        })
        .expect("the fence ended");
    if let Err(broken) = ferry_sim::check_failover_order(events, fenced, &DISKS) {
        panic!("{case}: {broken}\n{events:#?}");
    }
    let refused = Refused {
        requests: count(&|event| event.what == "request"),
        concurrent_writes_on_the_nfs_vms: count(&|event| {
            event.what == "request"
                && event.code.as_deref() == Some("ConflictingConcurrentWriteNotAllowed")
        }),
        concurrent_writes_on_the_cluster: count(&|event| {
            event.what == "request"
                && event.code.as_deref() == Some("OperationNotAllowed")
                && event.path.contains("/managedClusters/data100-hub")
        }),
        stale_etags: count(&|event| {
            event.what == "request" && event.code.as_deref() == Some("PreconditionFailed")
        }),
        throttled: count(&|event| {
            event.what == "request"
                && event.code.as_deref() == Some("SubscriptionRequestsThrottled")
        }),
        most_throttled_in_a_row: most_throttled_in_a_row(events),
    };
    if strictness == Strictness::AnotherWriterAndThrottling {
        // Every failover writes the old VM (its fence) and creates the cluster: the writer
        // armed before the apply that sends each meets it.
        assert!(
            refused.concurrent_writes_on_the_nfs_vms > 0
                && refused.concurrent_writes_on_the_cluster > 0,
            "{case}: the other writer refused a write on the NFS VMs and on the cluster: {refused:?}\n{events:#?}"
        );
        // ferry paces itself by ARM's remaining counts and waits a 429's `Retry-After`: a
        // request may meet an empty bucket that a killed apply drained, not again and again.
        assert!(
            refused.most_throttled_in_a_row <= 3,
            "{case}: no request throttled more than three times in a row: {refused:?}\n{events:#?}"
        );
    }
    refused
}

/// The most times ARM throttled one request (the same method and path) before it answered
/// it otherwise.
fn most_throttled_in_a_row(events: &[SimEvent]) -> usize {
    let mut in_a_row: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut most = 0;
    for event in events.iter().filter(|event| event.what == "request") {
        let run = in_a_row
            .entry((event.method.as_str(), event.path.as_str()))
            .or_default();
        if event.code.as_deref() == Some("SubscriptionRequestsThrottled") {
            *run += 1;
            most = most.max(*run);
        } else {
            *run = 0;
        }
    }
    most
}

/// No step the journal recorded as finished ran again, no killed apply journaled an end, and
/// the finishing apply ended complete.
fn check_journal(case: &str, records: &[Value], killed: &[std::ops::Range<usize>]) {
    let mut finished: BTreeSet<&str> = BTreeSet::new();
    for record in records {
        let step = record["step"].as_str().unwrap_or_default();
        match record["event"].as_str() {
            Some("step_started") => {
                assert!(
                    !finished.contains(step),
                    "{case}: {step} ran again after the journal recorded it finished"
                );
            }
            Some("step_finished") if record["result"].get("ok").is_some() => {
                finished.insert(step);
            }
            // After an apply that ended complete, a plan with the same step ids is new work
            // (a kill after the journal's end, before the state recorded the generation, is
            // finished by a plan that may check the service again).
            Some("apply_finished") if record["complete"] == true => finished.clear(),
            _ => {}
        }
    }
    // A killed apply journals no end, unless the kill landed after its last record: an end
    // that says complete, with every step done.
    for segment in killed {
        let segment = &records[segment.clone()];
        let ends = segment
            .iter()
            .filter(|record| record["event"] == "apply_finished")
            .count();
        let ended_whole = segment
            .last()
            .is_some_and(|last| last["event"] == "apply_finished" && last["complete"] == true);
        assert!(
            ends == 0 || (ends == 1 && ended_whole),
            "{case}: a killed apply journaled an end before its last step: {segment:#?}"
        );
    }
    let last = records.last().unwrap();
    assert_eq!(last["event"], "apply_finished", "{case}");
    assert_eq!(last["complete"], true, "{case}");
}

/// Runs the reference failover, then one failover killed at each boundary of the steps whose
/// action `wanted` selects; returns how many boundaries it covered.
async fn kill_at_every_boundary(what: &str, wanted: impl Fn(Action) -> bool) -> usize {
    let mut chain = Chain::start(Strictness::Default).await;
    let reference = chain.reference();
    let boundaries = reference.boundaries(wanted);
    assert!(
        !boundaries.is_empty(),
        "{what}: no step of the plan selected"
    );
    for boundary in &boundaries {
        chain.kill_and_recover(&reference, boundary, None).await;
    }
    chain.summary(what, boundaries.len());
    boundaries.len()
}

/// The steps that move the data: the old pool's export, the fence, each detach, move and
/// attach (several disks share one Azure operation), the import.
fn moves_the_data(action: Action) -> bool {
    matches!(
        action,
        Action::Export
            | Action::Fence
            | Action::Detach
            | Action::Move
            | Action::Attach
            | Action::Import
    )
}

/// The steps that bring the service back: hooks, DNS updates (each with its wait for the old
/// TTL), the TLS check, and anything else of the plan that is neither a create, a move of
/// data nor a retirement, so that a new kind of step is covered without a new list.
fn brings_the_service_back(action: Action) -> bool {
    !matches!(action, Action::Create | Action::Retire) && !moves_the_data(action)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_boundary_of_the_steps_that_move_the_data() {
    kill_at_every_boundary("the steps that move the data", moves_the_data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_boundary_of_the_new_generations_creates() {
    kill_at_every_boundary("the creates", |action| action == Action::Create).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_boundary_of_the_steps_that_bring_the_service_back() {
    kill_at_every_boundary("the service", brings_the_service_back).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_boundary_of_the_old_generations_retirement() {
    kill_at_every_boundary("the retirement", |action| action == Action::Retire).await;
}

/// The resume itself killed: the failover killed while a disk's move runs in Azure, its
/// resume (which picks that move up from its recorded operation) killed while the pool's
/// import runs, and the apply after that finishes the failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_again_while_resuming() {
    let mut chain = Chain::start(Strictness::Default).await;
    let reference = chain.reference();
    let first = Boundary {
        step: "disk.home1:move".into(),
        moment: Moment::While,
    };
    let second = Boundary {
        step: "zfs_pool.home:import".into(),
        moment: Moment::While,
    };
    chain
        .kill_and_recover(&reference, &first, Some(&second))
        .await;
    chain.summary("the resume killed", 1);
}

/// The steps whose requests meet the other writer: the old VM's fence (the first write on it)
/// and a disk's detach from it, the new VM's and the new cluster's creates (the first write on
/// each) and a disk's attach to the new VM. One disk stands for the four: they share their
/// VM's writes.
fn writes_the_nfs_vms_or_the_cluster(step: &str) -> bool {
    matches!(
        step,
        "vm.nfs@old:fence"
            | "vm.nfs@new:create"
            | "aks_cluster.hub@new:create"
            | "disk.home0:detach"
            | "disk.home0:attach"
    )
}

/// The strict simulator: ARM's throttling at Azure's sizes all along, and another writer on
/// the NFS VMs and the cluster at ferry's first write to each, armed again before every apply.
/// Killed at both boundaries of the steps that meet the other writer (a subset: every boundary
/// would add minutes to the suite, and the others meet no more of it than any apply does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_the_boundaries_of_the_writes_another_writer_refuses_under_arms_throttling() {
    let what = "another writer and ARM's throttling";
    let mut chain = Chain::start(Strictness::AnotherWriterAndThrottling).await;
    let reference = chain.reference();
    let boundaries: Vec<Boundary> = reference
        .boundaries(|_| true)
        .into_iter()
        .filter(|boundary| writes_the_nfs_vms_or_the_cluster(&boundary.step))
        .collect();
    assert_eq!(boundaries.len(), 10, "{what}: {boundaries:#?}");
    for boundary in &boundaries {
        chain.kill_and_recover(&reference, boundary, None).await;
    }
    chain.summary(what, boundaries.len());
}
