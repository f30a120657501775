//! Developer automation for ferry, in Rust: `cargo xtask test` sets up the local servers the
//! tests use and runs every test; `cargo xtask demo` runs the data100 failover story;
//! `cargo xtask bench-hooks` measures ferry's hooks against Terraform's `local-exec`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod bench_hooks;
mod bench_plan;
mod demo;

const HELP: &str = "\
cargo xtask <task>

tasks:
  test     install and start what the tests need (as root: Debian packages, local servers),
           then run every test of the workspace
  setup    only the installation and start of the test servers
  demo [--mode cold|warm|hot|drill]
           the data100 failover story, end to end, against the ARM simulator, BIND,
           sshd and zfs-fuse on this machine; --mode warm tells it with a warm standby
           (specs/data100/warm), --mode hot with a hot standby whose replica of the pool
           takes over (specs/data100/hot: a ZFS host per VM), --mode drill with no outage:
           ferry drill rehearses the failover on copies beside production, checked
           untouched. Its last line is one JSON object with the measured time to recovery
           and data lost (a drill's: production_untouched and leftovers)
  bench-hooks [--repeat N]
           ferry's hooks against Terraform's terraform_data + local-exec on the same
           wide and narrow DAGs of sleeps; prints wall times and ratios (BENCHMARKS.md)
  bench-plan [--sizes 1000,3000,10000,100000] [--terraform-max 10000] [--repeat N]
           ferry plan against terraform plan on one DAG of the synthetic specs' shape,
           written for both; prints wall times and ratios (BENCHMARKS.md)
";

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match task.as_str() {
        "test" => {
            setup(&root)?;
            test()
        }
        "setup" => setup(&root),
        "demo" => {
            let mode = demo_mode(std::env::args().skip(2))?;
            // Like the tests, the demo installs and starts what it needs on a fresh machine.
            setup(&root)?;
            demo::demo(&root, mode)
        }
        "bench-hooks" => {
            let arguments: Vec<String> = std::env::args().skip(2).collect();
            bench_hooks::bench_hooks(&root, &arguments)
        }
        "bench-plan" => {
            let arguments: Vec<String> = std::env::args().skip(2).collect();
            bench_plan::bench_plan(&root, &arguments)
        }
        _ => {
            print!("{HELP}");
            if task.is_empty() || task == "help" || task == "--help" {
                Ok(())
            } else {
                bail!("unknown task `{task}`")
            }
        }
    }
}

/// `cargo xtask demo [--mode cold|warm|hot|drill]` (or `--mode=warm`); cold without it.
fn demo_mode(mut arguments: impl Iterator<Item = String>) -> Result<demo::Mode> {
    let mut mode = demo::Mode::Cold;
    while let Some(argument) = arguments.next() {
        let value = match argument.strip_prefix("--mode") {
            Some("") => arguments
                .next()
                .context("--mode needs a value: cold, warm, hot or drill")?,
            Some(value) if value.starts_with('=') => value[1..].to_owned(),
            _ => bail!(
                "unknown argument `{argument}`: cargo xtask demo [--mode cold|warm|hot|drill]"
            ),
        };
        mode = demo::Mode::parse(&value)?;
    }
    Ok(mode)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub(crate) fn run(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Runs every `xtask/setup/*.sh` in name order: each installs the Debian packages one group
/// of tests needs and starts its servers, and does nothing that is already done.
fn setup(root: &Path) -> Result<()> {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(root.join("xtask/setup"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "sh"))
        .collect();
    scripts.sort();
    for script in scripts {
        eprintln!("xtask: {}", script.display());
        run(Command::new("bash").arg(&script))?;
    }
    Ok(())
}

/// Doc tests first, then every other test through nextest when it is installed, so that the
/// output ends with the runner's summary of the whole run.
fn test() -> Result<()> {
    run(Command::new("cargo").args(["test", "--workspace", "--doc"]))?;
    let nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if nextest {
        run(Command::new("cargo").args([
            "nextest",
            "run",
            "--workspace",
            "--no-fail-fast",
            "--failure-output",
            "final",
        ]))
    } else {
        run(Command::new("cargo").args(["test", "--workspace", "--no-fail-fast"]))
    }
}

/// Copies a folder, following links: a link is copied as what it names (the warm spec's
/// `hooks` links to a folder).
pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if std::fs::metadata(entry.path())?.is_dir() {
            if entry.file_name() != ".ferry" {
                copy_dir(&entry.path(), &target)?;
            }
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
