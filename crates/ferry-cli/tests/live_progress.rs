//! The live view of `ferry apply` in a real pseudo-terminal, read back as a screen: the
//! operator confirms with `yes`, then watches the failover of data100 on the simulated world.
//! What the screen must show: a status line with the steps ended and the time to recovery,
//! each running step against its estimate with the critical path marked, and at the end the
//! moment the service came back, measured against the estimate. What it must never show:
//! resume tokens (raw JSON, operation URLs).

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::Scratch;

const ROWS: u16 = 40;
const COLUMNS: u16 = 150;

/// A pseudo-terminal pair of the given size: (the side the test reads and types on, the
/// side the child gets as its stdin, stdout and stderr).
fn pseudo_terminal() -> (File, OwnedFd) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let primary = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&primary).unwrap();
    unlockpt(&primary).unwrap();
    let name = ptsname(&primary, Vec::new()).unwrap();
    let secondary = File::options()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    rustix::termios::tcsetwinsize(
        &secondary,
        rustix::termios::Winsize {
            ws_row: ROWS,
            ws_col: COLUMNS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
    (File::from(primary), OwnedFd::from(secondary))
}

/// Every screen the terminal showed while `ferry ARGS` ran in it, answering `answer` to the
/// first confirmation prompt; with all the bytes it wrote.
fn run_in_terminal(scratch: &Scratch, args: &[&str], answer: &str) -> (Vec<String>, Vec<u8>, i32) {
    let (mut terminal, secondary) = pseudo_terminal();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(scratch.path())
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .stdin(Stdio::from(secondary.try_clone().unwrap()))
        .stdout(Stdio::from(secondary.try_clone().unwrap()))
        .stderr(Stdio::from(secondary))
        .spawn()
        .unwrap();
    // Reading ends with an error (EIO) once the child, the last holder of the other side,
    // exits: the test's own copies were moved into the child's Stdio and dropped.
    let (sender, received) = mpsc::channel::<Vec<u8>>();
    let mut reader = terminal.try_clone().unwrap();
    let reading = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(count) = reader.read(&mut buffer) {
            if count == 0 || sender.send(buffer[..count].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut parser = vt100::Parser::new(
        std::num::NonZeroU16::new(ROWS).unwrap(),
        std::num::NonZeroU16::new(COLUMNS).unwrap(),
        0,
    );
    let mut screens = Vec::new();
    let mut bytes = Vec::new();
    let mut answered = false;
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        match received.recv_timeout(Duration::from_millis(200)) {
            Ok(chunk) => {
                parser.process(&chunk);
                bytes.extend_from_slice(&chunk);
                let screen = parser.screen().contents();
                if !answered && screen.contains("Only 'yes' is accepted") {
                    terminal.write_all(answer.as_bytes()).unwrap();
                    answered = true;
                }
                screens.push(screen);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(Instant::now() < give_up, "ferry apply did not end in 120 s");
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    reading.join().unwrap();
    let status = child.wait().unwrap();
    (screens, bytes, status.code().unwrap_or(-1))
}

#[test]
fn the_live_view_tells_the_time_to_recovery_and_hides_resume_tokens() {
    let scratch = Scratch::new();
    scratch.build();
    scratch.break_api_server(1);
    let (screens, bytes, code) = run_in_terminal(
        &scratch,
        &[
            "apply",
            "data100",
            "--world",
            "world.json",
            "--world-time-scale",
            "0.003",
        ],
        "yes\r",
    );
    let last = screens.last().cloned().unwrap_or_default();
    assert_eq!(code, 0, "{last}");

    // While it ran: the status line, and a running step against its estimate, starred on the
    // critical path (the cluster create is on data100's). Estimates follow the world's time
    // scale: the cluster's 8 minutes are 1.4 s at 0.003, the 39m 29s to recovery 7.1 s.
    let status = screens
        .iter()
        .flat_map(|screen| screen.lines())
        .find(|line| line.contains(" ended · ") && line.contains("the service back in ~"));
    assert!(
        status.is_some(),
        "no status line with the time to recovery:\n{last}"
    );
    let running_cluster = screens
        .iter()
        .flat_map(|screen| screen.lines())
        .find(|line| {
            line.contains("aks_cluster.hub@g2:create")
                && line.contains(" of ~1.4s")
                && line.contains('★')
        });
    assert!(
        running_cluster.is_some(),
        "no live line for the cluster create:\n{last}"
    );

    // At the end: the moment the service came back, against the estimate, and the summary.
    assert!(
        last.contains("the service is back after") && last.contains("estimated 7.1s"),
        "{last}"
    );
    assert!(last.contains("Apply complete"), "{last}");

    // Resume tokens are the journal's: never on the screen.
    let everything = String::from_utf8_lossy(&bytes);
    assert!(!everything.contains("resume from"), "{everything}");
    assert!(!everything.contains("memory://operations"), "{everything}");
}

#[test]
fn an_answer_other_than_yes_on_the_terminal_changes_nothing() {
    let scratch = Scratch::new();
    scratch.build();
    scratch.break_api_server(1);
    let world = scratch.world();
    let (screens, _, code) = run_in_terminal(
        &scratch,
        &["apply", "data100", "--world", "world.json"],
        "no\r",
    );
    let last = screens.last().cloned().unwrap_or_default();
    assert_eq!(code, 1, "{last}");
    assert!(
        last.contains("Apply cancelled: nothing was changed."),
        "{last}"
    );
    assert_eq!(scratch.world(), world);
}
