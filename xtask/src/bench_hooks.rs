//! `cargo xtask bench-hooks`: ferry's hooks against Terraform's `terraform_data` with
//! `local-exec`, on the same two DAGs of `sleep`s, each tool as a whole process, wall time.
//!
//! The DAGs come from a fixed seed, so every run measures the same work: "wide" is 200
//! independent hooks, "narrow" is 4 chains of 50. Each hook sleeps 0.10 to 0.50 s. ferry runs
//! its release binary on a hook-only spec (hooks need no cloud: the real providers, nothing
//! simulated); Terraform runs offline (`terraform_data` is built in: `terraform init` fetches
//! nothing). Each configuration runs `--repeat` times (3 by default) from an empty state and
//! the median is printed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The seed of the sleeps: change it and every figure in BENCHMARKS.md changes with it.
const SEED: u64 = 19;

/// One hook: its name, how long it sleeps (in hundredths of a second, so that both tools run
/// the very same `sleep` text), and the hook it waits for.
struct Hook {
    name: String,
    centiseconds: u64,
    after: Option<String>,
}

/// splitmix64: a few lines of a well-known generator, so that the xtask needs no crate for
/// reproducible numbers.
pub(crate) struct Sequence(pub(crate) u64);

impl Sequence {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 10 to 50 hundredths of a second.
    fn sleep(&mut self) -> u64 {
        10 + self.next() % 41
    }
}

fn wide(sequence: &mut Sequence) -> Vec<Hook> {
    (0..200)
        .map(|index| Hook {
            name: format!("w{index}"),
            centiseconds: sequence.sleep(),
            after: None,
        })
        .collect()
}

fn narrow(sequence: &mut Sequence) -> Vec<Hook> {
    let mut hooks = Vec::new();
    for chain in 0..4 {
        for position in 0..50 {
            hooks.push(Hook {
                name: format!("c{chain}_{position}"),
                centiseconds: sequence.sleep(),
                after: (position > 0).then(|| format!("c{chain}_{}", position - 1)),
            });
        }
    }
    hooks
}

fn sleep_command(hook: &Hook) -> String {
    format!(
        "sleep {}.{:02}",
        hook.centiseconds / 100,
        hook.centiseconds % 100
    )
}

fn ferry_spec(hooks: &[Hook]) -> String {
    let mut text = String::from("[deployment]\nname = \"bench\"\nlocation = \"westeurope\"\n");
    for hook in hooks {
        let _ = write!(
            text,
            "\n[hook.{}]\nshell = \"{}\"\n",
            hook.name,
            sleep_command(hook)
        );
        if let Some(after) = &hook.after {
            let _ = writeln!(text, "depends_on = [\"hook.{after}\"]");
        }
    }
    text
}

fn terraform_configuration(hooks: &[Hook]) -> String {
    let mut text = String::new();
    for hook in hooks {
        let _ = writeln!(text, "resource \"terraform_data\" \"{}\" {{", hook.name);
        if let Some(after) = &hook.after {
            let _ = writeln!(text, "  depends_on = [terraform_data.{after}]");
        }
        let _ = writeln!(
            text,
            "  provisioner \"local-exec\" {{\n    command = \"{}\"\n  }}\n}}\n",
            sleep_command(hook)
        );
    }
    text
}

/// Runs `command` to its end, quietly, and returns its wall time; fails when it does.
pub(crate) fn timed(command: &mut Command) -> Result<Duration> {
    let shown = format!("{command:?}");
    let start = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    let took = start.elapsed();
    if !output.status.success() {
        bail!(
            "{shown} failed with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(took)
}

/// Writes `configuration` as `main.tf` into `folder` (made if need be) and initialises it.
pub(crate) fn terraform_folder_with(folder: &Path, configuration: &str) -> Result<()> {
    std::fs::create_dir_all(folder)?;
    std::fs::write(folder.join("main.tf"), configuration)?;
    timed(
        Command::new("terraform")
            .args(["init", "-input=false", "-no-color"])
            .current_dir(folder),
    )
    .context("terraform init must work offline: terraform_data is built in")?;
    Ok(())
}

pub(crate) fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// One way of running one tool: a label and its extra arguments.
struct Setting {
    label: &'static str,
    parallelism: &'static str,
    extra: &'static [&'static str],
}

fn run_ferry(binary: &Path, folder: &Path, setting: &Setting, repeat: usize) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..repeat {
        // Every run from an empty state, so that every hook runs.
        let _ = std::fs::remove_dir_all(folder.join(".ferry"));
        let mut command = Command::new(binary);
        command
            .args(["apply", ".", "--auto-approve", "--parallelism"])
            .arg(setting.parallelism)
            .args(setting.extra)
            .current_dir(folder)
            .env("NO_COLOR", "1");
        times.push(timed(&mut command)?);
    }
    Ok(median(times))
}

fn run_terraform(folder: &Path, setting: &Setting, repeat: usize) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..repeat {
        for file in ["terraform.tfstate", "terraform.tfstate.backup"] {
            let _ = std::fs::remove_file(folder.join(file));
        }
        let mut command = Command::new("terraform");
        command
            .args(["apply", "-auto-approve", "-input=false", "-no-color"])
            .arg(format!("-parallelism={}", setting.parallelism))
            .current_dir(folder);
        times.push(timed(&mut command)?);
    }
    Ok(median(times))
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

pub(crate) fn bench_hooks(root: &Path, arguments: &[String]) -> Result<()> {
    let repeat = match arguments {
        [] => 3,
        [flag, count] if flag == "--repeat" => count
            .parse::<usize>()
            .ok()
            .filter(|count| *count > 0)
            .context("--repeat takes a number of runs, 1 or more")?,
        _ => bail!("cargo xtask bench-hooks [--repeat N]"),
    };
    crate::run(Command::new("cargo").args(["build", "--release", "--quiet", "-p", "ferry-cli"]))?;
    let binary = target_dir(root).join("release/ferry");
    let work = target_dir(root).join("bench-hooks");
    let _ = std::fs::remove_dir_all(&work);

    let mut sequence = Sequence(SEED);
    let dags = [
        ("wide", wide(&mut sequence)),
        ("narrow", narrow(&mut sequence)),
    ];
    let ferry_settings = [
        Setting {
            label: "ferry, default (--parallelism 10)",
            parallelism: "10",
            extra: &[],
        },
        Setting {
            label: "ferry, hooks capped at 4 (the old provider cap)",
            parallelism: "10",
            extra: &["--kind-parallelism", "hook=4"],
        },
        Setting {
            label: "ferry, --parallelism 50",
            parallelism: "50",
            extra: &[],
        },
    ];
    let terraform_settings = [
        Setting {
            label: "terraform, default (-parallelism=10)",
            parallelism: "10",
            extra: &[],
        },
        Setting {
            label: "terraform, -parallelism=50",
            parallelism: "50",
            extra: &[],
        },
    ];

    println!("median of {repeat} runs each, wall time of the whole process");
    for (name, hooks) in &dags {
        let folder = work.join(name);
        let ferry_folder = folder.join("ferry");
        let terraform_folder = folder.join("terraform");
        std::fs::create_dir_all(&ferry_folder)?;
        std::fs::write(ferry_folder.join("main.toml"), ferry_spec(hooks))?;
        terraform_folder_with(&terraform_folder, &terraform_configuration(hooks))?;

        let total: u64 = hooks.iter().map(|hook| hook.centiseconds).sum();
        println!(
            "\n{name}: {} hooks, {:.2} s of sleep in all",
            hooks.len(),
            total as f64 / 100.0
        );
        let mut terraform_times = Vec::new();
        for setting in &terraform_settings {
            let took = run_terraform(&terraform_folder, setting, repeat)?;
            println!("  {:<50} {:>7.2} s", setting.label, took.as_secs_f64());
            terraform_times.push((setting.parallelism, took));
        }
        for setting in &ferry_settings {
            let took = run_ferry(&binary, &ferry_folder, setting, repeat)?;
            let terraform = terraform_times
                .iter()
                .find(|(parallelism, _)| *parallelism == setting.parallelism)
                .map(|(_, took)| *took)
                .unwrap_or_default();
            println!(
                "  {:<50} {:>7.2} s   ferry / terraform at parallelism {}: {:.2}",
                setting.label,
                took.as_secs_f64(),
                setting.parallelism,
                took.as_secs_f64() / terraform.as_secs_f64().max(f64::EPSILON)
            );
        }
    }
    Ok(())
}
