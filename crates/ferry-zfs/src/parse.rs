//! Pure parsers of `zpool` and `zfs` output, tested on output captured from real ZFS.
//!
//! Each one returns a [`ParseError`] naming the command when the text is not what it expects,
//! and never panics: a host with another ZFS version must give a readable error, not a crash.

/// Output a parser did not expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unexpected output from `{command}`: {message}; run the command on the host to see what it says"
)]
pub struct ParseError {
    pub command: String,
    pub message: String,
}

impl ParseError {
    fn new(command: &str, message: impl Into<String>) -> Self {
        Self {
            command: command.to_owned(),
            message: message.into(),
        }
    }
}

/// The states `zpool` reports for a pool or a vdev.
const STATES: &[&str] = &[
    "ONLINE",
    "DEGRADED",
    "FAULTED",
    "OFFLINE",
    "UNAVAIL",
    "REMOVED",
    "SUSPENDED",
    "AVAIL",
    "INUSE",
];

fn check_state<'a>(command: &str, state: &'a str, row: &str) -> Result<&'a str, ParseError> {
    if STATES.contains(&state) {
        Ok(state)
    } else {
        Err(ParseError::new(
            command,
            format!("`{state}` is not a pool state, in `{}`", row.trim()),
        ))
    }
}

/// One line of `zpool list -H -o name,health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolListEntry {
    pub name: String,
    pub health: String,
}

/// Parses `zpool list -H -o name,health [POOL]`.
pub fn parse_pool_list(command: &str, text: &str) -> Result<Vec<PoolListEntry>, ParseError> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [name, health] = fields[..] else {
                return Err(ParseError::new(
                    command,
                    format!(
                        "expected 2 tab-separated columns, found {} in `{line}`",
                        fields.len()
                    ),
                ));
            };
            Ok(PoolListEntry {
                name: name.to_owned(),
                health: check_state(command, health, line)?.to_owned(),
            })
        })
        .collect()
}

/// One row of a pool's configuration, as `zpool status` or `zpool import` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdevRow {
    /// The device as ZFS names it: a path, a grouping (`mirror-0`), or a GUID when the device
    /// is missing.
    pub name: String,
    pub state: String,
    /// How deep the row is indented under the pool (1 for a top-level vdev).
    pub depth: usize,
    /// What ZFS adds after the columns: `was /dev/...`, `cannot open`, `missing device`.
    pub note: String,
}

impl VdevRow {
    /// The device's path: the `was` path of a missing device, or the name.
    pub fn path(&self) -> &str {
        self.note
            .strip_prefix("was ")
            .map(str::trim)
            .unwrap_or(&self.name)
    }

    /// A grouping row rather than a device: `mirror-0`, `raidz1-0`, `logs`, `spares`.
    pub fn is_group(&self) -> bool {
        [
            "mirror",
            "raidz",
            "draid",
            "logs",
            "cache",
            "spares",
            "replacing",
        ]
        .iter()
        .any(|group| self.name.starts_with(group))
    }
}

/// A pool as `zpool status POOL` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    pub name: String,
    pub state: String,
    /// Every row under the pool, groupings included, in order.
    pub vdevs: Vec<VdevRow>,
}

/// The layout of a pool's top-level vdevs as ferry's `layout` says it: `mirror` or `raidz`
/// when they are such groups, `stripe` when they are plain devices.
pub fn layout_of(rows: &[VdevRow]) -> &'static str {
    let top = rows.iter().filter(|row| row.depth == 1);
    let mut layout = "stripe";
    for row in top {
        if row.name.starts_with("mirror") {
            layout = "mirror";
        } else if row.name.starts_with("raidz") {
            layout = "raidz";
        }
    }
    layout
}

impl PoolStatus {
    /// The devices, without grouping rows.
    pub fn devices(&self) -> impl Iterator<Item = &VdevRow> {
        self.vdevs.iter().filter(|row| !row.is_group())
    }
}

/// Splits off the `config:` rows of one pool's block: the pool row first. `with_counters` is
/// true for `zpool status`, whose rows carry READ WRITE CKSUM columns.
fn config_rows(
    command: &str,
    block: &[&str],
    with_counters: bool,
) -> Result<Vec<VdevRow>, ParseError> {
    let Some(start) = block.iter().position(|line| line.trim() == "config:") else {
        return Err(ParseError::new(command, "no `config:` section"));
    };
    let mut rows = Vec::new();
    let mut base_indent: Option<usize> = None;
    for line in &block[start + 1..] {
        if line.trim().is_empty() {
            if rows.is_empty() {
                continue;
            }
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"NAME") {
            continue;
        }
        // Tabs open the block; spaces after them nest vdevs two by two.
        let indent = line
            .trim_start_matches('\t')
            .chars()
            .take_while(|c| *c == ' ')
            .count();
        let base = *base_indent.get_or_insert(indent);
        let [name, state, rest @ ..] = &words[..] else {
            return Err(ParseError::new(
                command,
                format!("a configuration row without a state: `{}`", line.trim()),
            ));
        };
        let rest = if with_counters && rest.len() >= 3 {
            &rest[3..]
        } else {
            rest
        };
        rows.push(VdevRow {
            name: (*name).to_owned(),
            state: check_state(command, state, line)?.to_owned(),
            depth: indent.saturating_sub(base) / 2,
            note: rest.join(" "),
        });
    }
    if rows.is_empty() {
        return Err(ParseError::new(command, "the `config:` section is empty"));
    }
    Ok(rows)
}

fn field<'a>(block: &[&'a str], key: &str) -> Option<&'a str> {
    block.iter().find_map(|line| {
        line.trim_start()
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Parses `zpool status POOL`.
pub fn parse_status(command: &str, text: &str) -> Result<PoolStatus, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(name) = field(&lines, "pool") else {
        return Err(ParseError::new(command, "no `pool:` line"));
    };
    let Some(state) = field(&lines, "state") else {
        return Err(ParseError::new(command, "no `state:` line"));
    };
    let state = check_state(command, state, state)?.to_owned();
    let mut rows = config_rows(command, &lines, true)?;
    let pool = rows.remove(0);
    if pool.name != name {
        return Err(ParseError::new(
            command,
            format!(
                "the configuration starts with `{}`, not the pool `{name}`",
                pool.name
            ),
        ));
    }
    Ok(PoolStatus {
        name: name.to_owned(),
        state,
        vdevs: rows,
    })
}

/// A pool that `zpool import -d DIR` finds and that is not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportablePool {
    pub name: String,
    pub id: String,
    /// `ONLINE` (importable), `DEGRADED` (importable with missing devices), `UNAVAIL`, ...
    pub state: String,
    /// ZFS's `action:` text: whether and how it can be imported.
    pub action: String,
    pub vdevs: Vec<VdevRow>,
    /// The pool row's own note (`missing device`).
    pub note: String,
}

impl ImportablePool {
    /// Whether ZFS says the pool can be imported at all.
    pub fn can_import(&self) -> bool {
        self.state == "ONLINE" || self.state == "DEGRADED"
    }

    /// Whether ZFS asks for `-f`: the pool was not exported, and the system that last had it
    /// may still use it ("... and the '-f' flag"). A cleanly exported pool never does.
    pub fn needs_force(&self) -> bool {
        self.action.contains("'-f'")
    }
}

/// Parses `zpool import -d DIR`: every pool it lists, possibly none.
pub fn parse_import_listing(command: &str, text: &str) -> Result<Vec<ImportablePool>, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.trim_start().starts_with("pool:"))
        .map(|(index, _)| index)
        .collect();
    if starts.is_empty() {
        if let Some(line) = lines.iter().find(|line| !line.trim().is_empty()) {
            return Err(ParseError::new(
                command,
                format!("expected `pool:` blocks, found `{}`", line.trim()),
            ));
        }
        return Ok(Vec::new());
    }
    let mut pools = Vec::new();
    for (position, start) in starts.iter().enumerate() {
        let end = starts.get(position + 1).copied().unwrap_or(lines.len());
        let block = &lines[*start..end];
        let name = field(block, "pool").unwrap_or_default();
        let Some(state) = field(block, "state") else {
            return Err(ParseError::new(
                command,
                format!("pool `{name}` has no `state:` line"),
            ));
        };
        let state = check_state(command, state, state)?.to_owned();
        // The action text runs over continuation lines that start with a tab.
        let action = block
            .iter()
            .position(|line| line.trim_start().starts_with("action:"))
            .map(|index| {
                let mut text = block[index]
                    .trim_start()
                    .trim_start_matches("action:")
                    .trim()
                    .to_owned();
                for line in &block[index + 1..] {
                    if line.starts_with('\t') && !line.trim().is_empty() {
                        text.push(' ');
                        text.push_str(line.trim());
                    } else {
                        break;
                    }
                }
                text
            })
            .unwrap_or_default();
        let mut rows = config_rows(command, block, false)?;
        let pool = rows.remove(0);
        pools.push(ImportablePool {
            name: name.to_owned(),
            id: field(block, "id").unwrap_or_default().to_owned(),
            state,
            action,
            note: pool.note,
            vdevs: rows,
        });
    }
    Ok(pools)
}

/// One dataset's managed properties from `zfs list -H -o name,mountpoint,sharenfs,quota,
/// readonly,ferry:role`, and the two that say whether it takes writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRow {
    pub name: String,
    pub mountpoint: String,
    pub sharenfs: String,
    pub quota: String,
    /// `on` when the dataset takes no writes (a replica's; or mounted read-only, which
    /// zfs-fuse reads `on` too).
    pub readonly: String,
    /// The replication role ferry gave the pool (`replica` or `primary`), `-` when none.
    pub role: String,
}

/// The columns [`parse_dataset_list`] reads, in order.
pub const DATASET_COLUMNS: &str = "name,mountpoint,sharenfs,quota,readonly,ferry:role";

/// Parses `zfs list -H -o name,mountpoint,sharenfs,quota,readonly,ferry:role -r POOL`.
pub fn parse_dataset_list(command: &str, text: &str) -> Result<Vec<DatasetRow>, ParseError> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [name, mountpoint, sharenfs, quota, readonly, role] = fields[..] else {
                return Err(ParseError::new(
                    command,
                    format!(
                        "expected 6 tab-separated columns, found {} in `{line}`",
                        fields.len()
                    ),
                ));
            };
            Ok(DatasetRow {
                name: name.to_owned(),
                mountpoint: mountpoint.to_owned(),
                sharenfs: sharenfs.to_owned(),
                quota: quota.to_owned(),
                readonly: readonly.to_owned(),
                role: role.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
