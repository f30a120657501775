//! The `hook` provider running real processes: environment, working folder, streamed output,
//! outputs from the last line, exit codes, masking, and a timeout that kills the whole
//! process group.

mod support;

use std::path::Path;

use ferry_core::{Action, Observation};
use ferry_hook::HookProvider;
use serde_json::json;
use support::{apply, read, step};

fn hook(inputs: serde_json::Value) -> ferry_core::Step {
    step("hook.deploy@g2", Action::Run, inputs)
}

#[tokio::test]
async fn the_environment_and_working_folder_are_passed_and_output_is_streamed() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("hooks")).unwrap();
    let script = root.path().join("hooks/deploy.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"deploying $1 to $HUB_HOST from $(basename \"$PWD\")\"\necho \"path is set: ${PATH:+yes}\"\necho warning on stderr >&2\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(&script)
        .status()
        .unwrap();
    let provider = HookProvider::new(root.path());
    let (result, lines) = apply(
        &provider,
        &hook(json!({
            "command": ["./deploy.sh", "staging"],
            "working_dir": "hooks",
            "env": {"HUB_HOST": "staging.data100.example.org"},
        })),
    )
    .await;
    let outcome = result.unwrap();
    assert_eq!(outcome.outputs["exit_code"], json!(0));
    assert!(
        lines.contains(&"deploying staging to staging.data100.example.org from hooks".to_owned()),
        "{lines:?}"
    );
    // PATH is passed on from ferry's environment.
    assert!(lines.contains(&"path is set: yes".to_owned()), "{lines:?}");
    assert!(lines.contains(&"warning on stderr".to_owned()), "{lines:?}");
}

#[tokio::test]
async fn outputs_are_read_from_the_last_line() {
    let provider = HookProvider::new(Path::new("/"));
    let (result, lines) = apply(
        &provider,
        &hook(json!({
            "shell": "echo installing; echo '{\"url\": \"https://hub.example.org\", \"replicas\": 2, \"ignored\": 1}'",
            "outputs": ["url", "replicas"],
        })),
    )
    .await;
    let outputs = result.unwrap().outputs;
    assert_eq!(outputs["url"], json!("https://hub.example.org"));
    assert_eq!(outputs["replicas"], json!(2));
    assert_eq!(outputs["exit_code"], json!(0));
    assert!(!outputs.contains_key("ignored"));
    assert_eq!(lines[0], "installing");
}

#[tokio::test]
async fn outputs_written_to_the_ferry_outputs_file_win_over_the_last_line() {
    let provider = HookProvider::new(Path::new("/"));
    // The file is the hook's; the last line says something else, and `replicas` is only there.
    let script = r#"echo "outputs go to $FERRY_OUTPUTS"; printf '{"url": "https://from-file.example.org", "extra": 1}' > "$FERRY_OUTPUTS"; echo '{"url": "https://from-stdout", "replicas": 2}'"#;
    let inputs = json!({
        "shell": script,
        "outputs": ["url", "replicas"],
        // The spec cannot point ferry at another file: the variable is always ferry's own.
        "env": {"FERRY_OUTPUTS": "/tmp/not-this-one.json"},
    });
    let (result, lines) = apply(&provider, &hook(inputs.clone())).await;
    let outputs = result.unwrap().outputs;
    assert_eq!(outputs["url"], json!("https://from-file.example.org"));
    assert_eq!(outputs["replicas"], json!(2));
    assert!(!outputs.contains_key("extra"));
    let first_path = lines[0].strip_prefix("outputs go to ").unwrap().to_owned();
    assert!(first_path.ends_with("/outputs.json"), "{first_path}");
    assert_ne!(first_path, "/tmp/not-this-one.json");
    // The folder went away with the run, so nothing is left for a later run to read.
    assert!(!Path::new(&first_path).exists());

    // A second run gets a fresh file: one that writes nothing falls back to its last line.
    let (result, lines) = apply(
        &provider,
        &hook(json!({
            "shell": r#"echo "outputs go to $FERRY_OUTPUTS"; echo '{"url": "https://from-stdout", "replicas": 3}'"#,
            "outputs": ["url", "replicas"],
        })),
    )
    .await;
    let outputs = result.unwrap().outputs;
    assert_eq!(outputs["url"], json!("https://from-stdout"));
    assert_eq!(outputs["replicas"], json!(3));
    assert_ne!(lines[0], format!("outputs go to {first_path}"));

    // A file that is not a JSON object fails the step, saying what to write.
    let (result, _) = apply(
        &provider,
        &hook(json!({
            "shell": r#"echo 'done' > "$FERRY_OUTPUTS""#,
            "outputs": ["url"],
        })),
    )
    .await;
    insta::assert_snapshot!(result.unwrap_err().message);
}

#[tokio::test]
async fn a_failing_command_reports_its_exit_code_and_last_lines() {
    let provider = HookProvider::new(Path::new("/"));
    let script = "for i in $(seq 1 25); do echo line $i; done; exit 3";
    let (result, lines) = apply(&provider, &hook(json!({"shell": script}))).await;
    let error = result.unwrap_err();
    assert!(!error.transient, "retry is off by default");
    assert_eq!(lines.len(), 25);
    insta::assert_snapshot!(error.message);

    let (result, _) = apply(&provider, &hook(json!({"shell": "exit 1", "retry": true}))).await;
    let error = result.unwrap_err();
    assert!(error.transient, "retry = true makes a failure transient");
    assert_eq!(error.message, "exit code 1; it printed nothing");

    let (result, _) = apply(&provider, &hook(json!({"command": ["/nonexistent/helm"]}))).await;
    insta::assert_snapshot!("missing_program", result.unwrap_err().message);
}

#[tokio::test]
async fn secret_looking_values_are_masked_in_output_and_errors() {
    let provider = HookProvider::new(Path::new("/"));
    let secret = "hunter2-very-secret";
    let (result, lines) = apply(
        &provider,
        &hook(json!({
            "shell": "echo \"token is $API_TOKEN\"; echo \"config is $KUBECONFIG\"; exit 2",
            "env": {"API_TOKEN": secret, "KUBECONFIG": "/tmp/kubeconfig-g2"},
        })),
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(
        lines,
        vec!["token is [redacted]", "config is /tmp/kubeconfig-g2"]
    );
    assert!(!error.message.contains(secret));
    insta::assert_snapshot!(error.message);
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let folder = tempfile::tempdir().unwrap();
    let provider = HookProvider::new(folder.path());
    // The hook starts a grandchild that would outlive it, and waits.
    let (result, lines) = apply(
        &provider,
        &hook(json!({
            "shell": "sleep 300 & echo $! > grandchild.pid; echo $$ > child.pid; echo started; wait",
            "timeout_seconds": 1,
        })),
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(lines, vec!["started"]);
    insta::assert_snapshot!(error.message);
    for file in ["child.pid", "grandchild.pid"] {
        let pid = std::fs::read_to_string(folder.path().join(file)).unwrap();
        let pid = pid.trim();
        // Gone, or a zombie waiting for its reaper: either way it no longer runs.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit(") ")
                    .next()
                    .and_then(|rest| rest.chars().next())
            });
        assert!(
            matches!(state, None | Some('Z') | Some('X')),
            "{file} {pid} still runs: state {state:?}"
        );
    }
}

#[tokio::test]
async fn a_hook_reads_as_its_last_remembered_run() {
    let provider = HookProvider::new(Path::new("/"));
    assert_eq!(
        read(
            &provider,
            "hook.deploy@g2",
            json!({"command": ["true"]}),
            None
        )
        .await,
        Observation::Absent
    );
    let inputs = json!({"command": ["true"], "env": {"API_TOKEN": "s3cr3t-token", "HOST": "hub"}});
    let (result, _) = apply(&provider, &hook(inputs.clone())).await;
    let remembered = result.unwrap().outputs;
    // The state never holds the secret itself.
    assert!(
        !serde_json::to_string(&remembered)
            .unwrap()
            .contains("s3cr3t-token")
    );
    let observed = read(
        &provider,
        "hook.deploy@g2",
        inputs.clone(),
        Some(&remembered),
    )
    .await;
    assert_eq!(observed.attribute("env"), Some(&inputs["env"]));
    assert_eq!(observed.attribute("exit_code"), Some(&json!(0)));
    // A changed secret shows as a change, without showing either value.
    let changed =
        json!({"command": ["true"], "env": {"API_TOKEN": "another-token", "HOST": "hub"}});
    let observed = read(&provider, "hook.deploy@g2", changed, Some(&remembered)).await;
    let env = observed.attribute("env").unwrap();
    assert!(
        env["API_TOKEN"]
            .as_str()
            .unwrap()
            .starts_with("[redacted] sha256:")
    );
}

/// The variables a hook printed with `env`, without `FERRY_OUTPUTS` (a fresh path each run).
fn printed_environment(lines: &[String]) -> Vec<String> {
    let mut printed: Vec<String> = lines
        .iter()
        .filter(|line| !line.starts_with("FERRY_OUTPUTS="))
        .cloned()
        .collect();
    printed.sort();
    printed
}

#[tokio::test]
async fn a_hook_gets_a_clean_environment_never_ferrys_credentials() {
    let path = std::env::var("PATH").unwrap();
    let ferrys_environment = std::collections::BTreeMap::from(
        [
            ("PATH", path.as_str()),
            ("HOME", "/home/operator"),
            ("LANG", "C.UTF-8"),
            ("AZURE_CLIENT_SECRET", "azure-client-secret-value"),
            ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
            ("FERRY_ARM_TOKEN", "ferry-arm-token-value"),
            ("DATA100_TSIG_SECRET", "tsig-secret-value"),
            ("HTTPS_PROXY", "http://proxy.example:3128"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned())),
    );
    let provider = HookProvider::new(Path::new("/")).with_parent_environment(ferrys_environment);
    let (result, lines) = apply(
        &provider,
        &hook(json!({
            "command": ["env"],
            "env": {"HUB_HOST": "hub.data100.example.org"},
            "pass_env": ["HTTPS_PROXY"],
        })),
    )
    .await;
    result.unwrap();
    // What ferry passes on is a secret by default: its value is masked in the output.
    assert_eq!(
        printed_environment(&lines),
        vec![
            "HOME=/home/operator".to_owned(),
            "HTTPS_PROXY=[redacted]".to_owned(),
            "HUB_HOST=hub.data100.example.org".to_owned(),
            "LANG=C.UTF-8".to_owned(),
            format!("PATH={path}"),
        ]
    );
    assert!(lines.iter().any(|line| line.starts_with("FERRY_OUTPUTS=")));
}

#[tokio::test]
async fn a_hook_gets_nothing_of_the_real_process_environment_but_what_is_listed() {
    // The test runs under cargo, whose CARGO_* variables are in this process's environment.
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    let provider = HookProvider::new(Path::new("/"));
    let (result, lines) = apply(&provider, &hook(json!({"command": ["env"]}))).await;
    result.unwrap();
    let names: Vec<String> = printed_environment(&lines)
        .iter()
        .map(|line| line.split('=').next().unwrap().to_owned())
        .collect();
    for name in &names {
        assert!(
            ferry_hook::run::INHERITED_VARIABLES.contains(&name.as_str()),
            "{name} reached the hook: {names:?}"
        );
    }
    assert!(names.contains(&"PATH".to_owned()), "{names:?}");
}

#[tokio::test]
async fn pass_env_of_ferrys_credentials_or_of_an_unset_variable_is_refused() {
    let provider = HookProvider::new(Path::new("/")).with_parent_environment(
        std::collections::BTreeMap::from([(
            "AZURE_CLIENT_SECRET".to_owned(),
            "azure-client-secret-value".to_owned(),
        )]),
    );
    let mut messages = Vec::new();
    for pass_env in [json!(["AZURE_CLIENT_SECRET"]), json!(["NOT_SET_ANYWHERE"])] {
        let (result, lines) = apply(
            &provider,
            &hook(json!({"command": ["env"], "pass_env": pass_env})),
        )
        .await;
        assert!(lines.is_empty(), "the hook must not run: {lines:?}");
        messages.push(result.unwrap_err().message);
    }
    insta::assert_snapshot!(messages.join("\n"));
}
