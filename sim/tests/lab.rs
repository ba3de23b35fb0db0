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

#[test]
fn the_load_test_issues_codes_as_a_health_authority_and_stores_every_upload_and_no_chaff() {
    let output = Command::new(env!("CARGO_BIN_EXE_enfeed-lab"))
        .env("ENFEED_LOG", "warn")
        .args([
            "bench",
            "--keys",
            "0",
            "--uploads",
            "120",
            "--clients",
            "6",
            "--chaff",
            "40",
            "--connection-per-upload",
        ])
        .output()
        .expect("enfeed-lab runs");
    let out = String::from_utf8(output.stdout).unwrap();
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{out}{err}");
    assert!(
        out.contains("120 of 14 keys from 6 clients (a new connection per request)"),
        "{out}"
    );
    assert!(
        out.contains("chaff:                80 requests (40 % of all)"),
        "{out}"
    );
    assert!(
        out.contains("1680 keys, 1680 uploaded: 0 lost, 0 stored from chaff"),
        "{out}"
    );
}
