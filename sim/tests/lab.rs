//! The `enfeed-lab` command as a user runs it: a real process.

use std::process::Command;

#[test]
fn simulate_runs_a_small_world_and_notifies_every_contact() {
    let output = Command::new(env!("CARGO_BIN_EXE_enfeed-lab"))
        .env("ENFEED_LOG", "info")
        .args([
            "simulate",
            "--phones",
            "6",
            "--days",
            "3",
            "--infections",
            "20",
        ])
        .output()
        .expect("enfeed-lab runs");
    let out = String::from_utf8(output.stdout).unwrap();
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{err}");
    assert!(out.contains("missed: 0"), "{out}");
    assert!(out.contains("notified phones"), "{out}");
}
