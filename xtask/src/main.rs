//! Developer automation for ferry, in Rust: `cargo xtask test` sets up the local servers the
//! tests use and runs every test; `cargo xtask demo` runs the data100 failover story.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <task>

tasks:
  test     install and start what the tests need (as root: Debian packages, local servers),
           then run every test of the workspace
  setup    only the installation and start of the test servers
  demo     the data100 failover story, end to end, on a simulated world
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
        "demo" => demo(),
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

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(command: &mut Command) -> Result<()> {
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

/// The data100 story on a simulated world: build generation 1, make the AKS API server stop
/// answering, plan the failover, apply it, and plan again.
fn demo() -> Result<()> {
    run(Command::new("cargo").args(["build", "--release", "-p", "ferry-cli"]))?;
    let ferry = workspace_root().join("target/release/ferry");
    let work = std::env::temp_dir().join(format!("ferry-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let spec = work.join("data100");
    copy_dir(&workspace_root().join("specs/data100"), &spec)?;
    let world = work.join("world.json");
    let ferry_cmd = || {
        let mut command = Command::new(&ferry);
        command.current_dir(&work);
        command
    };
    println!("== Generation 1: build data100 from nothing");
    run(ferry_cmd().args([
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
        "--world-time-scale",
        "0.002",
    ]))?;
    println!("\n== 11:21: the AKS API server stops answering; ARM still calls the cluster fine");
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&world)?)?;
    value["unhealthy"]["aks_cluster.hub@g1"] = serde_json::Value::from(
        "GET /readyz timed out after 5s (ARM: provisioningState Succeeded, powerState Running)",
    );
    std::fs::write(&world, serde_json::to_string_pretty(&value)?)?;
    println!("\n== The operator runs ferry plan");
    run(ferry_cmd().args([
        "plan",
        "data100",
        "--world",
        "world.json",
        "-o",
        "failover.plan",
    ]))?;
    println!("\n== ... and applies exactly that plan");
    run(ferry_cmd().args([
        "apply",
        "failover.plan",
        "--world",
        "world.json",
        "--world-time-scale",
        "0.002",
    ]))?;
    println!("\n== Planning again: nothing left to do");
    run(ferry_cmd().args([
        "plan",
        "data100",
        "--world",
        "world.json",
        "--detailed-exitcode",
    ]))?;
    println!("\nThe demo's files are in {}", work.display());
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if entry.file_name() != ".ferry" {
                copy_dir(&entry.path(), &target)?;
            }
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
