//! Options typed with one dash, as Terraform spells them (`-out`, `-auto-approve`): clap
//! would read `-out plan.json` as `-o ut` and an unexpected `plan.json`, or save the plan to a
//! file named `ut`. A word after one dash that is one of ferry's long options is refused
//! before parsing, with the spelling to type instead.

use std::ffi::OsString;

use clap::CommandFactory;

use crate::args::Cli;

/// The advice for the first argument that is a long option written with one dash, if any.
/// Arguments after `--` are values, never options.
pub(crate) fn misspelled_long_option(arguments: &[OsString]) -> Option<String> {
    let long_names = long_option_names();
    let arguments: Vec<&str> = arguments
        .iter()
        .skip(1)
        .map_while(|argument| argument.to_str())
        .take_while(|argument| *argument != "--")
        .collect();
    arguments.iter().enumerate().find_map(|(index, argument)| {
        let word = argument.strip_prefix('-')?;
        if word.starts_with('-') {
            return None;
        }
        let (name, attached) = match word.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (word, None),
        };
        if name.chars().count() < 2 || !long_names.iter().any(|long| long == name) {
            return None;
        }
        let typed = match attached {
            Some(value) => format!("--{name}={value}"),
            None => match arguments.get(index + 1) {
                Some(next) if !next.starts_with('-') && takes_value(name) => {
                    format!("--{name} {next}")
                }
                _ => format!("--{name}"),
            },
        };
        Some(format!(
            "`{argument}` has one dash, as Terraform spells it; ferry's long options take two: \
             type `{typed}`"
        ))
    })
}

/// Every long option of every `ferry` command.
fn long_option_names() -> Vec<String> {
    let mut names = Vec::new();
    collect(&Cli::command(), &mut names);
    names
}

fn collect(command: &clap::Command, names: &mut Vec<String>) {
    for argument in command.get_arguments() {
        if let Some(long) = argument.get_long() {
            names.push(long.to_owned());
        }
    }
    for subcommand in command.get_subcommands() {
        collect(subcommand, names);
    }
}

/// Whether the long option `name` takes a value, in the first command that has it.
fn takes_value(name: &str) -> bool {
    fn find(command: &clap::Command, name: &str) -> Option<bool> {
        command
            .get_arguments()
            .find(|argument| argument.get_long() == Some(name))
            .map(|argument| argument.get_action().takes_values())
            .or_else(|| {
                command
                    .get_subcommands()
                    .find_map(|subcommand| find(subcommand, name))
            })
    }
    find(&Cli::command(), name).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(arguments: &[&str]) -> Option<String> {
        let arguments: Vec<OsString> = std::iter::once("ferry")
            .chain(arguments.iter().copied())
            .map(OsString::from)
            .collect();
        misspelled_long_option(&arguments)
    }

    #[test]
    fn terraform_spellings_get_the_two_dash_spelling() {
        assert_eq!(
            check(&["plan", "data100", "-out", "x.plan"]).unwrap(),
            "`-out` has one dash, as Terraform spells it; ferry's long options take two: type `--out x.plan`"
        );
        assert_eq!(
            check(&["apply", "data100", "-auto-approve"]).unwrap(),
            "`-auto-approve` has one dash, as Terraform spells it; ferry's long options take two: type `--auto-approve`"
        );
        assert_eq!(
            check(&["plan", "data100", "-var=region=westeurope"]).unwrap(),
            "`-var=region=westeurope` has one dash, as Terraform spells it; ferry's long options take two: type `--var=region=westeurope`"
        );
        assert_eq!(
            check(&["plan", "data100", "-json"]).unwrap(),
            "`-json` has one dash, as Terraform spells it; ferry's long options take two: type `--json`"
        );
    }

    #[test]
    fn short_options_two_dashes_values_and_words_after_the_separator_pass() {
        assert_eq!(check(&["plan", "data100", "-o", "x.plan"]), None);
        assert_eq!(check(&["plan", "data100", "-ox.plan"]), None);
        assert_eq!(check(&["plan", "data100", "--out", "x.plan"]), None);
        assert_eq!(check(&["plan", "data100", "-h"]), None);
        assert_eq!(check(&["plan", "--", "-out"]), None);
        assert_eq!(check(&["plan", "data100", "-unknown-word"]), None);
    }
}
