//! The `enfeed` command as a user runs it: a real process, real files, real HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use enfeed::ports::Signer as _;

fn enfeed() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_enfeed"));
    command
        .env_remove("ENFEED_REGION")
        .env_remove("ENFEED_DATA")
        .env("ENFEED_LOG", "info");
    command
}

fn google_export() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/google-export-example")
}

fn run(command: &mut Command) -> (bool, String, String) {
    let out = command.output().expect("enfeed runs");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn inspect_reads_and_verifies_googles_real_export_file() {
    let dir = google_export();
    let (ok, out, err) = run(enfeed()
        .arg("inspect")
        .arg(dir.join("testExport-2-records-1-of-1.zip"))
        .arg("--public-key")
        .arg(dir.join("public.pem")));
    assert!(ok, "{err}");
    assert!(out.contains("region: US"), "{out}");
    assert!(out.contains("batch: 1/1"), "{out}");
    assert!(out.contains("start: 1590159600  end: 1590246000"), "{out}");
    assert!(
        out.contains("key 172fc480e598490c34177604339b1543 start 2649980 period 1 risk 8"),
        "{out}"
    );
    assert!(
        out.contains("key 2b63053ac483238de176169e861f3dcd start 2649866 period 114 risk 1"),
        "{out}"
    );
    assert!(out.contains("signature: valid"), "{out}");
}

#[test]
fn inspect_refuses_a_signature_by_another_key_and_a_file_that_is_no_export() {
    let dir = google_export();
    let scratch = tempfile::tempdir().unwrap();
    let other = enfeed::signing::KeyFileSigner::open_or_create(scratch.path(), "XX").unwrap();
    let other_pem = scratch.path().join("other.pem");
    std::fs::write(&other_pem, other.verification_keys()[0].to_pem()).unwrap();
    let (ok, _, err) = run(enfeed()
        .arg("inspect")
        .arg(dir.join("testExport-2-records-1-of-1.zip"))
        .arg("--public-key")
        .arg(&other_pem));
    assert!(!ok);
    assert!(err.contains("signature verification failed"), "{err}");
    let (ok, _, err) = run(enfeed().arg("inspect").arg(dir.join("public.pem")));
    assert!(!ok);
    assert!(err.contains("is not a valid export file"), "{err}");
}

#[test]
fn codes_and_dataprep_commands_work_on_a_data_directory() {
    let data = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(enfeed()
        .args(["codes", "issue", "--region", "CH", "--data"])
        .arg(data.path()));
    assert!(ok, "{err}");
    let code: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code["code"].as_str().unwrap().len(), 10);
    let (ok, out, err) = run(enfeed()
        .args(["dataprep", "--region", "CH", "--data"])
        .arg(data.path()));
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["chunks"], serde_json::json!([]));
    let (ok, _, err) = run(enfeed().args(["dataprep", "--region", "ch"]));
    assert!(!ok);
    assert!(err.contains("two upper-case letters"), "{err}");
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_answers_over_http_with_a_generated_admin_token() {
    let data = tempfile::tempdir().unwrap();
    let mut child = enfeed()
        .args([
            "serve",
            "--region",
            "CH",
            "--listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let server = Server(child);
    // Read the log on a thread, so a server that never says where it listens fails the test.
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = stderr.lines().map_while(Result::ok);
        let listen = lines.by_ref().find_map(|line| {
            line.split("listen=")
                .nth(1)
                .map(|a| a.split_whitespace().next().unwrap_or_default().to_string())
        });
        let _ = found.send(listen);
        lines.for_each(drop); // keep draining, or the server's log writes would fail
    });
    let address = address
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("serve starts within 30 s")
        .expect("serve logs its address");
    let base = format!("http://{address}");
    let http = reqwest::Client::new();

    let index: serde_json::Value = http
        .get(format!("{base}/v1/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index["region"], "CH");
    let token = std::fs::read_to_string(data.path().join("admin-token")).unwrap();
    let response = http
        .post(format!("{base}/v1/admin/codes"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let keys: serde_json::Value = http
        .get(format!("{base}/v1/verification-keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        keys["keys"][0]["publicKeyPem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    drop(server);
}

#[test]
fn simulate_runs_a_small_world_and_notifies_every_contact() {
    let (ok, out, err) = run(enfeed().args([
        "simulate",
        "--phones",
        "6",
        "--days",
        "3",
        "--infections",
        "20",
    ]));
    assert!(ok, "{err}");
    assert!(out.contains("missed: 0"), "{out}");
    assert!(out.contains("notified phones"), "{out}");
}
