//! `cargo xtask bench-plan`: `ferry plan` against `terraform plan` on one DAG written for
//! both, each tool as a whole process from an empty state, wall time.
//!
//! The DAG has the shape of the synthetic specs of BENCHMARKS.md ("Planner"), repeated until
//! it has the size asked for: per group a resource group, a network after it, a VM after both,
//! one to four disks after the VM, and a hook after the VM and its first disk (and, one group
//! in three, after the previous group's hook). Both tools get the same nodes and the same
//! edges, written as dependencies: ferry as hooks (`depends_on`, no cloud needed), Terraform
//! as `terraform_data` (`depends_on`, built in, so `terraform init` fetches nothing). Neither
//! reads a cloud, so what is measured is each tool's own planning: reading the
//! configuration, building the graph, diffing against an empty state, printing the plan.
//! Terraform runs only up to `--terraform-max` nodes (10,000 by default; it took 26 s there).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::bench_hooks::{Sequence, median, target_dir, terraform_folder_with, timed};

/// The seed of the disks per group and the hooks' extra edges.
const SEED: u64 = 7;

/// One node of the DAG and the nodes it waits for.
struct Node {
    name: String,
    after: Vec<String>,
}

/// A DAG of `size` nodes (the last group cut short where the size ends).
fn dag(size: usize) -> Vec<Node> {
    let mut sequence = Sequence(SEED);
    let mut nodes = Vec::with_capacity(size);
    let mut previous_hook: Option<String> = None;
    let mut group = 0;
    while nodes.len() < size {
        let (rg, vnet, vm) = (
            format!("rg{group}"),
            format!("vnet{group}"),
            format!("vm{group}"),
        );
        let disks: Vec<String> = (0..1 + sequence.next() % 4)
            .map(|disk| format!("disk{group}_{disk}"))
            .collect();
        let mut hook_after = vec![vm.clone(), disks[0].clone()];
        if group % 3 == 2
            && let Some(previous) = &previous_hook
        {
            hook_after.push(previous.clone());
        }
        let hook = format!("hook{group}");
        nodes.push(Node {
            name: rg.clone(),
            after: Vec::new(),
        });
        nodes.push(Node {
            name: vnet.clone(),
            after: vec![rg.clone()],
        });
        nodes.push(Node {
            name: vm.clone(),
            after: vec![rg.clone(), vnet],
        });
        for disk in &disks {
            nodes.push(Node {
                name: disk.clone(),
                after: vec![rg.clone(), vm.clone()],
            });
        }
        nodes.push(Node {
            name: hook.clone(),
            after: hook_after,
        });
        previous_hook = Some(hook);
        group += 1;
    }
    nodes.truncate(size);
    // A node cut off at the end is no one's dependency any more.
    let kept: std::collections::HashSet<String> =
        nodes.iter().map(|node| node.name.clone()).collect();
    for node in &mut nodes {
        node.after.retain(|after| kept.contains(after));
    }
    nodes
}

fn edges(nodes: &[Node]) -> usize {
    nodes.iter().map(|node| node.after.len()).sum()
}

fn ferry_spec(nodes: &[Node]) -> String {
    let mut text = String::from("[deployment]\nname = \"bench\"\nlocation = \"westeurope\"\n");
    for node in nodes {
        let _ = write!(text, "\n[hook.{}]\nshell = \"true\"\n", node.name);
        if !node.after.is_empty() {
            let after: Vec<String> = node
                .after
                .iter()
                .map(|after| format!("\"hook.{after}\""))
                .collect();
            let _ = writeln!(text, "depends_on = [{}]", after.join(", "));
        }
    }
    text
}

fn terraform_configuration(nodes: &[Node]) -> String {
    let mut text = String::new();
    for node in nodes {
        let _ = writeln!(text, "resource \"terraform_data\" \"{}\" {{", node.name);
        if !node.after.is_empty() {
            let after: Vec<String> = node
                .after
                .iter()
                .map(|after| format!("terraform_data.{after}"))
                .collect();
            let _ = writeln!(text, "  depends_on = [{}]", after.join(", "));
        }
        let _ = writeln!(text, "  input = \"{}\"\n}}\n", node.name);
    }
    text
}

struct Options {
    sizes: Vec<usize>,
    terraform_max: usize,
    repeat: usize,
}

fn options(arguments: &[String]) -> Result<Options> {
    const USAGE: &str = "cargo xtask bench-plan [--sizes 1000,3000,10000,100000] [--terraform-max 10000] [--repeat N]";
    let mut options = Options {
        sizes: vec![1_000, 3_000, 10_000, 100_000],
        // Terraform took 26 s at 10,000 nodes here, and grows faster than the graph.
        terraform_max: 10_000,
        repeat: 3,
    };
    let mut arguments = arguments.iter();
    while let Some(flag) = arguments.next() {
        let value = arguments
            .next()
            .with_context(|| format!("{flag} needs a value: {USAGE}"))?;
        let number = |text: &str| {
            text.parse::<usize>()
                .ok()
                .filter(|number| *number > 0)
                .with_context(|| {
                    format!("{flag} takes whole numbers above 0, not `{text}`: {USAGE}")
                })
        };
        match flag.as_str() {
            "--sizes" => {
                options.sizes = value.split(',').map(number).collect::<Result<_>>()?;
            }
            "--terraform-max" => options.terraform_max = number(value)?,
            "--repeat" => options.repeat = number(value)?,
            _ => bail!("unknown argument `{flag}`: {USAGE}"),
        }
    }
    Ok(options)
}

fn run_ferry(binary: &Path, folder: &Path, repeat: usize) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..repeat {
        let _ = std::fs::remove_dir_all(folder.join(".ferry"));
        let mut command = Command::new(binary);
        command
            .args(["plan", "."])
            .current_dir(folder)
            .env("NO_COLOR", "1");
        times.push(timed(&mut command)?);
    }
    Ok(median(times))
}

fn run_terraform(folder: &Path, repeat: usize) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..repeat {
        let mut command = Command::new("terraform");
        command
            .args(["plan", "-input=false", "-no-color", "-lock=false"])
            .current_dir(folder);
        times.push(timed(&mut command)?);
    }
    Ok(median(times))
}

pub(crate) fn bench_plan(root: &Path, arguments: &[String]) -> Result<()> {
    let options = options(arguments)?;
    crate::run(Command::new("cargo").args(["build", "--release", "--quiet", "-p", "ferry-cli"]))?;
    let binary = target_dir(root).join("release/ferry");
    let work = target_dir(root).join("bench-plan");
    let _ = std::fs::remove_dir_all(&work);

    println!(
        "median of {} runs each, wall time of the whole process, from an empty state",
        options.repeat
    );
    println!(
        "{:>8} {:>8} {:>12} {:>12} {:>18}",
        "nodes", "edges", "ferry", "terraform", "terraform / ferry"
    );
    for &size in &options.sizes {
        let nodes = dag(size);
        let folder = work.join(size.to_string());
        let (ferry_folder, terraform_folder) = (folder.join("ferry"), folder.join("terraform"));
        std::fs::create_dir_all(&ferry_folder)?;
        std::fs::write(ferry_folder.join("main.toml"), ferry_spec(&nodes))?;
        let ferry = run_ferry(&binary, &ferry_folder, options.repeat)?;
        let terraform = if size <= options.terraform_max {
            terraform_folder_with(&terraform_folder, &terraform_configuration(&nodes))?;
            Some(run_terraform(&terraform_folder, options.repeat)?)
        } else {
            None
        };
        match terraform {
            Some(terraform) => println!(
                "{:>8} {:>8} {:>10.3} s {:>10.3} s {:>18.0}",
                nodes.len(),
                edges(&nodes),
                ferry.as_secs_f64(),
                terraform.as_secs_f64(),
                terraform.as_secs_f64() / ferry.as_secs_f64().max(f64::EPSILON)
            ),
            None => println!(
                "{:>8} {:>8} {:>10.3} s {:>12} {:>18}",
                nodes.len(),
                edges(&nodes),
                ferry.as_secs_f64(),
                "not run",
                format!("(over {})", options.terraform_max)
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DAG has exactly the size asked for, each node waits only for nodes before it (so
    /// both tools get an acyclic graph with no dangling name), and the same seed gives the
    /// same graph, so that every run measures the same work.
    #[test]
    fn the_dag_has_its_size_and_only_earlier_dependencies() {
        for size in [1, 2, 7, 1_000, 1_003] {
            let nodes = dag(size);
            assert_eq!(nodes.len(), size);
            let mut seen = std::collections::HashSet::new();
            for node in &nodes {
                for after in &node.after {
                    assert!(
                        seen.contains(after),
                        "{} waits for {after}, not before it",
                        node.name
                    );
                }
                assert!(seen.insert(node.name.clone()), "{} twice", node.name);
            }
            let again: Vec<(String, Vec<String>)> = dag(size)
                .into_iter()
                .map(|node| (node.name, node.after))
                .collect();
            let first: Vec<(String, Vec<String>)> = nodes
                .into_iter()
                .map(|node| (node.name, node.after))
                .collect();
            assert_eq!(first, again);
        }
        let nodes = dag(1_000);
        assert!(edges(&nodes) > nodes.len(), "the DAG is not just chains");
        assert!(ferry_spec(&nodes).contains("depends_on = [\"hook.rg0\"]"));
        assert!(terraform_configuration(&nodes).contains("depends_on = [terraform_data.rg0]"));
    }

    #[test]
    fn bad_options_are_named() {
        let arguments =
            |text: &str| -> Vec<String> { text.split_whitespace().map(str::to_owned).collect() };
        let error = options(&arguments("--sizes 10,x"))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("not `x`"), "{error}");
        let error = options(&arguments("--repeat")).err().unwrap().to_string();
        assert!(error.contains("--repeat needs a value"), "{error}");
        let error = options(&arguments("--fast 1")).err().unwrap().to_string();
        assert!(error.contains("unknown argument `--fast`"), "{error}");
        let parsed = options(&arguments("--sizes 5,6 --terraform-max 5 --repeat 1")).unwrap();
        assert_eq!(
            (parsed.sizes, parsed.terraform_max, parsed.repeat),
            (vec![5, 6], 5, 1)
        );
    }
}
