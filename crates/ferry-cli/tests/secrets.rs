//! Secrets through the `ferry` binary: a value from the environment never shows in `ferry
//! plan`, its saved plan, `ferry show` or `ferry apply`'s output, state and journal; a saved
//! plan carries it as a reference re-read at apply, refused when the value changed; and a
//! hook gets none of ferry's credentials.

mod support;

use std::path::Path;

const TOKEN: &str = "hub-token-very-secret";
const AZURE_SECRET: &str = "azure-client-secret-value";

/// A run's exit code and everything it printed (stdout, then stderr): a secret must show in
/// neither.
struct Run {
    code: i32,
    output: String,
}

fn ferry(folder: &Path, token: &str, args: &[&str]) -> Run {
    let mut command = support::command(folder, args);
    command
        .env("HUB_TOKEN", token)
        .env("AZURE_CLIENT_SECRET", AZURE_SECRET);
    let run = support::Run::from(command.output().unwrap());
    Run {
        code: run.code,
        output: format!("{}{}", run.stdout, run.stderr),
    }
}

fn assert_no_secret(place: &str, text: &str) {
    for secret in [TOKEN, AZURE_SECRET] {
        assert!(!text.contains(secret), "{secret} in {place}:\n{text}");
    }
}

#[test]
fn a_secret_from_the_environment_never_shows_and_a_saved_plan_reads_it_again_at_apply() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path();
    let spec = folder.join("hooked");
    std::fs::create_dir_all(&spec).unwrap();
    std::fs::write(
        spec.join("main.toml"),
        r#"[deployment]
name = "hooked"
location = "westeurope"

[hook.deploy]
shell = "echo \"logging in with $HUB_TOKEN\"; env | sort"
env = { HUB_TOKEN = "${env.HUB_TOKEN}" }
"#,
    )
    .unwrap();

    let planned = ferry(folder, TOKEN, &["plan", "hooked", "-o", "hooked.plan"]);
    assert_eq!(planned.code, 0, "{}", planned.output);
    assert_no_secret("ferry plan", &planned.output);
    assert!(
        planned.output.contains("[redacted env.HUB_TOKEN sha256:"),
        "{}",
        planned.output
    );
    let saved = std::fs::read_to_string(folder.join("hooked.plan")).unwrap();
    assert_no_secret("the saved plan", &saved);
    assert!(saved.contains("${env.HUB_TOKEN@sha256:"), "{saved}");
    for args in [
        &["show", "hooked.plan"][..],
        &["show", "hooked.plan", "--json"],
    ] {
        let shown = ferry(folder, TOKEN, args);
        assert_eq!(shown.code, 0, "{}", shown.output);
        assert_no_secret("ferry show", &shown.output);
    }

    // The saved plan was made with another value: refused, nothing run.
    let refused = ferry(folder, "another-token-value", &["apply", "hooked.plan"]);
    assert_eq!(refused.code, 1, "{}", refused.output);
    assert!(
        refused
            .output
            .contains("the environment variable HUB_TOKEN changed since the plan was made"),
        "{}",
        refused.output
    );

    let applied = ferry(folder, TOKEN, &["apply", "hooked.plan"]);
    assert_eq!(applied.code, 0, "{}", applied.output);
    assert_no_secret("ferry apply", &applied.output);
    // The hook got the token (masked in what it printed) and none of ferry's credentials.
    assert!(
        applied.output.contains("logging in with [redacted"),
        "{}",
        applied.output
    );
    assert!(
        applied.output.contains("HUB_TOKEN=[redacted"),
        "{}",
        applied.output
    );
    assert!(
        !applied.output.contains("AZURE_CLIENT_SECRET"),
        "{}",
        applied.output
    );
    for file in ["state.json", "journal.jsonl"] {
        let path = spec.join(".ferry").join(file);
        if let Ok(text) = std::fs::read_to_string(&path) {
            assert_no_secret(file, &text);
        }
    }

    // The state remembers the sealed value: the same token plans no change.
    let again = ferry(folder, TOKEN, &["plan", "hooked"]);
    assert_eq!(again.code, 0, "{}", again.output);
    assert!(again.output.contains("No changes"), "{}", again.output);
    assert_no_secret("the second plan", &again.output);
}
