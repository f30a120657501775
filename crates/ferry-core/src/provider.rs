//! The provider contract, in two halves.
//!
//! [`KindRules`] is pure: a kind's schema, validation, which changes force a replacement, what
//! an in-place update does, how a failover moves a stateful resource, and duration estimates.
//! The planner only ever holds `&dyn KindRules`, which is what keeps it free of I/O.
//!
//! [`Provider`] does the I/O: it reads an instance's observation and carries out one step.
//! Its invariants, which every implementation keeps and the engine relies on:
//! - `read` never changes anything in the world;
//! - `apply` of the same step twice is harmless: a step that already took effect succeeds again
//!   without doing it twice (create finds the resource, attach finds the disk attached, ...);
//! - errors say whether a retry can help (`transient`), and how long to wait if the remote
//!   side said so (`retry_after`);
//! - secrets never appear in observations, outputs, errors or progress lines.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::address::{Generation, InstanceAddress, Kind};
use crate::observation::{Observation, Snapshot};
use crate::plan::{Action, AttributeChange, Step, StepId};
use crate::resource::ResourceSpec;
use crate::value::{Attributes, Value};

/// The type a spec field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    /// A whole number within its range: the loader refuses one outside it, so that no value
    /// a spec can hold overflows the arithmetic it feeds (a deadline, a sum of estimates).
    Integer(IntegerRange),
    Boolean,
    StringList,
    /// A table of string values (environment variables, tags).
    StringMap,
    /// A table whose keys are names and whose values are tables (ZFS datasets).
    Table,
    /// The address of another resource of this kind: `vm = "vm.nfs"`.
    Reference(Kind),
    /// A list of addresses of resources of this kind: `disks = ["disk.home0", ...]`.
    ReferenceList(Kind),
}

impl FieldType {
    pub fn describe(self) -> String {
        match self {
            FieldType::String => "a string".into(),
            FieldType::Integer(range) => format!("an integer, {}", range.describe()),
            FieldType::Boolean => "a boolean".into(),
            FieldType::StringList => "a list of strings".into(),
            FieldType::StringMap => "a table of strings".into(),
            FieldType::Table => "a table".into(),
            FieldType::Reference(kind) => format!("the address of a {kind} (\"{kind}.NAME\")"),
            FieldType::ReferenceList(kind) => {
                format!("a list of {kind} addresses ([\"{kind}.NAME\", ...])")
            }
        }
    }
}

/// The values an integer field accepts, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntegerRange {
    pub min: i64,
    pub max: i64,
}

/// The longest time any one duration in a spec may say (a timeout, an interval, an estimate):
/// 7 days. A failover that needs one step to wait longer has stopped being a failover, and the
/// bound keeps every deadline and every sum of estimates far from overflowing.
pub const MAX_DURATION_SECONDS: i64 = 7 * 24 * 60 * 60;

impl IntegerRange {
    pub const fn new(min: i64, max: i64) -> Self {
        Self { min, max }
    }

    /// A duration in seconds, from `min` up to [`MAX_DURATION_SECONDS`].
    pub const fn seconds(min: i64) -> Self {
        Self::new(min, MAX_DURATION_SECONDS)
    }

    /// A TCP or UDP port.
    pub const PORT: IntegerRange = IntegerRange::new(1, 65_535);

    pub fn contains(self, number: i64) -> bool {
        (self.min..=self.max).contains(&number)
    }

    /// `from 1 to 65535`, as messages and the reference say it.
    pub fn describe(self) -> String {
        format!("from {} to {}", self.min, self.max)
    }
}

/// What changing a field in the spec does to an existing resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    InPlace,
    /// The resource must be replaced; the text says why (it is shown in the plan).
    Replace(&'static str),
    /// The change cannot be made at all (a pool's layout: the pool holds data and is never
    /// recreated); the plan stops with this text.
    Refuse(&'static str),
}

/// One field of a kind, as the spec loader checks it and the reference documents it.
#[derive(Debug, Clone, Copy)]
pub struct FieldSchema {
    pub name: &'static str,
    pub field_type: FieldType,
    pub required: bool,
    /// The default when the field is left out, as documentation text.
    pub default: Option<&'static str>,
    pub description: &'static str,
    pub on_change: OnChange,
}

/// One output of a kind, which other resources reference as `${kind.name.OUTPUT}`.
#[derive(Debug, Clone, Copy)]
pub struct OutputSchema {
    pub name: &'static str,
    pub description: &'static str,
}

/// A problem with one field of one resource, found by a kind's validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field (`name`, `disks[2]`); empty for the resource as a whole.
    pub field: String,
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// How a kind classifies one attribute's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeClass {
    InPlace,
    Replace(String),
    /// The change cannot be made at all (a disk cannot shrink); the plan stops with this text.
    Refuse(String),
}

/// What a stateful kind's rules see when a failover moves the service to a new generation.
#[derive(Debug, Clone, Copy)]
pub struct FailoverContext<'a> {
    pub spec: &'a ResourceSpec,
    /// This resource's own observation.
    pub observed: &'a Observation,
    pub from_generation: Generation,
    pub to_generation: Generation,
    /// Every observation the plan is made from, to look at the old and new instances of the
    /// resources this one references.
    pub snapshot: &'a Snapshot,
    /// The spec's fields resolved for the new generation, as a step's inputs start out.
    pub inputs: &'a Attributes,
}

/// What a kind's rules see of an in-place update the planner drafted from the diff.
#[derive(Debug, Clone, Copy)]
pub struct UpdateContext<'a> {
    pub spec: &'a ResourceSpec,
    /// The instance's observed attributes: an update is only planned for an instance that
    /// reads present.
    pub observed: &'a Attributes,
    /// The changes the update makes, every one of them in place. An `after` may still hold
    /// `${...}` of an output known only after apply.
    pub changes: &'a [AttributeChange],
}

/// What a kind's rules tell about one in-place update beyond the planner's own draft; a part
/// left `None` keeps the planner's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateRefinement {
    /// The step's reason, instead of the planner's `changed in place: PATHS`. It names every
    /// attribute that changes, as the planner's does: the plan lists the changes under it.
    pub reason: Option<String>,
    /// A warning the operator must not miss ([`Step::warning`], shown in red), such as a VM
    /// that stops for a few minutes.
    pub warning: Option<String>,
    /// The step's estimate, instead of [`KindRules::estimate_seconds`] for an update, when
    /// this update takes another way than the kind's usual one.
    pub estimate_seconds: Option<u64>,
}

/// A step as a kind's rules propose it; the planner gives it its id, edges and estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDraft {
    pub target: InstanceAddress,
    pub action: Action,
    pub reason: String,
    pub inputs: Attributes,
    pub changes: crate::plan::Changes,
    /// Steps this one must follow, beyond the planner's own edges. A step named here that is
    /// not in the plan is ignored: its work was already done.
    pub after: Vec<StepId>,
    /// Steps that must follow this one.
    pub before: Vec<StepId>,
    pub warning: Option<String>,
}

impl StepDraft {
    pub fn new(target: InstanceAddress, action: Action, reason: impl Into<String>) -> Self {
        Self {
            target,
            action,
            reason: reason.into(),
            inputs: Attributes::new(),
            changes: crate::plan::Changes::default(),
            after: Vec::new(),
            before: Vec::new(),
            warning: None,
        }
    }

    pub fn id(&self) -> StepId {
        StepId::new(&self.target, self.action)
    }

    pub fn input(mut self, name: &str, value: Value) -> Self {
        self.inputs.insert(name.to_owned(), value);
        self
    }

    pub fn after(mut self, id: StepId) -> Self {
        self.after.push(id);
        self
    }

    pub fn before(mut self, id: StepId) -> Self {
        self.before.push(id);
        self
    }
}

/// The pure half of a provider: everything the planner and the spec loader need to know about
/// one kind. Implementations do no I/O, read no clock and use no randomness.
pub trait KindRules: Send + Sync + fmt::Debug {
    fn kind(&self) -> Kind;

    /// One line for the reference and for `ferry validate` messages.
    fn description(&self) -> &'static str;

    fn fields(&self) -> &'static [FieldSchema];

    fn outputs(&self) -> &'static [OutputSchema];

    /// Checks beyond the schema: naming rules, ranges, combinations of fields.
    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        let _ = spec;
        Vec::new()
    }

    /// How changing `attribute` from `before` to `after` is carried out. The default follows
    /// the schema's [`OnChange`]; kinds override it where the answer depends on the values.
    fn classify_change(&self, attribute: &str, before: &Value, after: &Value) -> ChangeClass {
        let _ = (before, after);
        schema_class(self, attribute)
    }

    /// The usual time one step of this kind takes on Azure, in seconds, for estimates. The
    /// spec is there for kinds whose duration the operator knows best (a hook's deploy time).
    fn estimate_seconds(&self, action: Action, spec: &ResourceSpec) -> u64;

    /// The steps that move this stateful resource to a new generation in a failover. Called
    /// for stateful kinds only; replaceable kinds get a new instance from the planner.
    fn failover(&self, context: &FailoverContext<'_>) -> Result<Vec<StepDraft>, String> {
        let _ = context;
        Ok(Vec::new())
    }

    /// What this in-place update does, where the kind knows more than "changed in place": a
    /// reason to show, a warning, its own estimate. The planner calls it for every `update` it
    /// drafts from the diff of an instance that reads present (not for the steps
    /// [`KindRules::failover`] drafts), after [`KindRules::classify_change`] found every change
    /// in place. What it knows of the world is what the observation carries (a VM's reading
    /// says whether Azure can resize it without a deallocation), so it stays pure. The default
    /// keeps the planner's draft.
    fn refine_update(&self, context: &UpdateContext<'_>) -> UpdateRefinement {
        let _ = context;
        UpdateRefinement::default()
    }

    /// Changes a present instance needs although the spec does not write the attribute: what
    /// every converged instance of this kind is, such as a VM that runs. The planner asks only
    /// about the instance of the generation it converges (the active one, or a failover's new
    /// one), never about an older generation's, which a failover fences and then only retires.
    /// It adds each change whose attribute the spec's diff does not change already, in place,
    /// and puts its `after` in the update's inputs so that the provider carries it out; a
    /// reading that does not carry the attribute is no change. The default is none.
    fn implied_changes(&self, spec: &ResourceSpec, observed: &Attributes) -> Vec<AttributeChange> {
        let _ = (spec, observed);
        Vec::new()
    }

    /// Whether a field is compared with the observation. Fields that only steer ferry (a
    /// hook's `retry`, a pinned host key) are not attributes of the real resource.
    fn is_observed(&self, field: &str) -> bool {
        let _ = field;
        true
    }

    /// What an instance of this kind keeps running and billing while it exists, from its
    /// reading (`3 nodes of Standard_D4s_v5`, `a Standard static public IP`): shown for a
    /// generation a plan keeps after a failover, so that the operator sees what keeping it
    /// costs. `None` when it costs nothing worth naming; the default.
    fn upkeep(&self, observed: &Attributes) -> Option<String> {
        let _ = observed;
        None
    }

    /// How long clients may go on using an instance's old value once an update that changes
    /// it has ended, from its reading before the update and the update's inputs: a DNS
    /// record's TTL, for which resolvers cache the old answer (none when the update itself
    /// waits it out). A failover's time to recovery counts it, since the service is back only
    /// when clients reach the new generation. 0, the default, for everything read live.
    fn cached_for_seconds(&self, observed: &Attributes, inputs: &Attributes) -> u64 {
        let _ = (observed, inputs);
        0
    }

    /// What a step does to an instance of this kind in the simulated world (`ferry --world`,
    /// the `ferry-world` crate) beyond what every kind does there (a create or update stores
    /// its inputs, a delete removes the instance): the attributes the real provider changes
    /// (a fence deallocates, an attach sets the disk's VM) and outputs shaped like the real
    /// ones, so that plans applied to the simulation converge as they do on Azure. Pure, like
    /// the rest of the rules. The default changes nothing.
    fn simulate(&self, step: &SimulatedStep<'_>, attributes: &mut Attributes) {
        let _ = (step, attributes);
    }
}

/// What [`KindRules::simulate`] sees of a step run in the simulated world.
#[derive(Clone, Copy)]
pub struct SimulatedStep<'a> {
    pub instance: &'a InstanceAddress,
    pub action: Action,
    /// The step's inputs, every `${...}` already finished.
    pub inputs: &'a Attributes,
    /// A small number stable for this instance, for addresses that look real and differ.
    pub number: u32,
    /// The simulated attributes of another instance (a pool's host VM), if it exists.
    pub outputs_of: &'a (dyn Fn(&InstanceAddress) -> Option<Attributes> + Send + Sync),
}

impl fmt::Debug for SimulatedStep<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedStep")
            .field("instance", &self.instance)
            .field("action", &self.action)
            .field("inputs", &self.inputs)
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

impl SimulatedStep<'_> {
    /// The instance's generation (0 for a stateful instance).
    pub fn generation(&self) -> Generation {
        self.instance.generation.unwrap_or(0)
    }

    /// Sets `name` to `value` unless the attributes already hold it.
    pub fn default_output(attributes: &mut Attributes, name: &str, value: Value) {
        attributes.get_or_insert_with(name, || value);
    }
}

/// What a provider gets to read one instance.
#[derive(Clone, Copy)]
pub struct ReadContext<'a> {
    pub spec: &'a ResourceSpec,
    pub instance: &'a InstanceAddress,
    /// The spec's fields resolved for this instance's generation.
    pub fields: &'a Attributes,
    /// What ferry's state remembers of this instance (real id, outputs), if anything.
    pub remembered: Option<&'a Attributes>,
    /// What ferry's state remembers of any other instance: a ZFS pool is read over SSH on its
    /// host, whose address and device folder are that VM's outputs.
    pub outputs: &'a (dyn Fn(&InstanceAddress) -> Option<Attributes> + Send + Sync),
}

impl fmt::Debug for ReadContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadContext")
            .field("spec", &self.spec)
            .field("instance", &self.instance)
            .field("fields", &self.fields)
            .field("remembered", &self.remembered)
            .finish_non_exhaustive()
    }
}

/// What a provider gets to carry out one step.
pub struct ApplyContext<'a> {
    /// The step's inputs with every `${...}` resolved.
    pub inputs: &'a Attributes,
    /// Outputs of any instance, from state and from steps already done in this apply.
    pub outputs: &'a (dyn Fn(&InstanceAddress) -> Option<Attributes> + Send + Sync),
    /// A line for the progress view (a hook's output, a poll's result). Never a secret.
    pub progress: &'a (dyn Fn(String) + Send + Sync),
    /// The resume token an earlier, interrupted attempt of this step recorded (through
    /// `record_resume_token`), if any: what the provider needs to carry on without repeating
    /// its request, such as an ARM long-running operation to poll instead of sending it again,
    /// or the deadline of a DNS record's wait for its old TTL.
    pub resume_token: Option<&'a str>,
    /// Records this step's resume token in the journal, at once: a provider calls it as soon as
    /// it has started something a repeated request must not start again (ARM accepted an
    /// operation, DNS replaced values resolvers may cache). The token is the provider's own
    /// text, given back as `resume_token` to the step's next attempt or the next apply; the
    /// last one recorded counts. Never put a secret in it: the journal and progress show it.
    pub record_resume_token: &'a (dyn Fn(String) + Send + Sync),
}

impl fmt::Debug for ApplyContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplyContext")
            .field("inputs", &self.inputs)
            .field("resume_token", &self.resume_token)
            .finish_non_exhaustive()
    }
}

/// A step that succeeded, with the outputs its instance now has.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutcome {
    pub outputs: Attributes,
}

/// A step that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    /// A retry may succeed (throttling, a 5xx, a dropped connection).
    pub transient: bool,
    /// How long the remote side asked us to wait before trying again.
    pub retry_after: Option<Duration>,
}

impl StepError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
            retry_after: None,
        }
    }

    pub fn transient(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self {
            message: message.into(),
            transient: true,
            retry_after,
        }
    }
}

/// The I/O half of a provider. Object safe: the registry holds `Box<dyn Provider>`.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    fn kind(&self) -> Kind;

    /// How many of this provider's steps may run at once, unless the spec's `[limits]` or
    /// `--kind-parallelism` sets the kind's (`ApplyConfig::kind_parallelism`).
    ///
    /// The default, 8, is what the Azure providers keep (and `dns_record`, `check`): ARM's
    /// write limits. A subscription's writes share a bucket of 200 requests refilled at 10 a
    /// second (learn.microsoft.com, "Understand how Azure Resource Manager throttles
    /// requests"), and each step is a write and then polls; 8 per kind leaves room for the
    /// other kinds' writes and for whoever else writes to the subscription, so a failover
    /// never drains the bucket. `hook` has no limit of its own (the global parallelism
    /// bounds it) and `zfs_pool` keeps 4 (an SSH host runs one `zpool` command at a time).
    fn concurrency_limit(&self) -> usize {
        8
    }

    async fn read(&self, context: ReadContext<'_>) -> Observation;

    async fn apply(&self, step: &Step, context: ApplyContext<'_>)
    -> Result<StepOutcome, StepError>;

    /// Work an instance needs between applies, with no plan step: a hot standby's replication
    /// round, for `zfs_pool`'s replica instances (`zfs_pool.home@g2`). `ferry replicate` and
    /// the `ferry watch` leader call it. `context.inputs` are the instance's fields resolved
    /// for its generation, plus what the work needs besides (a replica's `replicate_from`).
    /// Returns what was done, for the operator; `Ok(None)` when the kind has no such work,
    /// the default.
    async fn tend(
        &self,
        instance: &InstanceAddress,
        context: ApplyContext<'_>,
    ) -> Result<Option<String>, StepError> {
        let _ = (instance, context);
        Ok(None)
    }

    /// Opens a read round, which lasts until the returned value is dropped: meanwhile `read`
    /// may answer from what the provider already fetched in the round (the Azure providers
    /// read a resource group's disks with one ARM list instead of a GET each). An observation
    /// opens one round for each pass of its reads, so the next pass reads the world afresh; a
    /// step's own reads never use one. The default holds nothing.
    fn begin_read_round(&self) -> ReadRound {
        ReadRound::default()
    }
}

/// An open read round ([`Provider::begin_read_round`]); dropping it closes the round.
#[derive(Default)]
pub struct ReadRound(Option<Box<dyn std::any::Any + Send + Sync>>);

impl ReadRound {
    /// A round that stays open while `guard` lives.
    pub fn new(guard: impl std::any::Any + Send + Sync) -> Self {
        ReadRound(Some(Box::new(guard)))
    }
}

impl fmt::Debug for ReadRound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadRound").field(&self.0.is_some()).finish()
    }
}

impl FieldSchema {
    /// A required field.
    pub const fn required(
        name: &'static str,
        field_type: FieldType,
        on_change: OnChange,
        description: &'static str,
    ) -> Self {
        Self {
            name,
            field_type,
            required: true,
            default: None,
            description,
            on_change,
        }
    }

    /// An optional field, with its default as documentation text (`None`: unset).
    pub const fn optional(
        name: &'static str,
        field_type: FieldType,
        default: Option<&'static str>,
        on_change: OnChange,
        description: &'static str,
    ) -> Self {
        Self {
            name,
            field_type,
            required: false,
            default,
            description,
            on_change,
        }
    }
}

/// The reason shown when an Azure resource's location would change.
pub const LOCATION_IS_FIXED: OnChange =
    OnChange::Replace("an Azure resource's location cannot change");
/// The reason shown when an Azure resource's name would change.
pub const NAME_IS_THE_ID: OnChange = OnChange::Replace("the name is part of the Azure resource id");

/// The schema's answer to [`KindRules::classify_change`], for kinds that override it for a few
/// fields only.
pub fn schema_class<R: KindRules + ?Sized>(rules: &R, attribute: &str) -> ChangeClass {
    match rules
        .fields()
        .iter()
        .find(|field| field.name == attribute)
        .map(|field| field.on_change)
    {
        Some(OnChange::Replace(why)) => ChangeClass::Replace(why.to_owned()),
        Some(OnChange::Refuse(why)) => ChangeClass::Refuse(why.to_owned()),
        _ => ChangeClass::InPlace,
    }
}
