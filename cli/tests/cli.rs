//! The `enfeed` command as a user runs it: a real process, real files, real HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use enfeed::ports::Signer as _;

/// An admin token long enough to be accepted.
const ADMIN_TOKEN: &str = "an-admin-token-of-at-least-32-characters";

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
    let other =
        enfeed::adapters::local::signing_keys::open_or_create(scratch.path(), "XX").unwrap();
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
    assert!(err.contains("upper-case letters"), "{err}");
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
            "--log-format",
            "json",
            "--data",
        ])
        .arg(data.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let server = Server(child);
    // Read the log on a thread, so a server that never says where it listens fails the test.
    // Every line is a JSON object.
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = stderr.lines().map_while(Result::ok);
        let listen = lines.by_ref().find_map(|line| {
            let line: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
            line["fields"]["listen"].as_str().map(str::to_string)
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
    // The operator's commands reach the running server; the data directory is its own.
    let data_arg = data.path().display().to_string();
    let (ok, out, err) = run(enfeed().args([
        "codes", "issue", "--region", "CH", "--data", &data_arg, "--server", &base,
    ]));
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["code"]
            .as_str()
            .unwrap()
            .len(),
        10
    );
    let (ok, _, err) = run(enfeed().args([
        "dataprep", "--region", "CH", "--data", &data_arg, "--server", &base,
    ]));
    assert!(ok, "{err}");
    let (ok, _, err) = run(enfeed().args(["dataprep", "--region", "CH", "--data", &data_arg]));
    assert!(!ok);
    assert!(err.contains("--server"), "{err}");
    // Code issuers too, and an issuer's token then issues codes.
    let server_args = ["--region", "CH", "--data", &data_arg, "--server", &base];
    let (ok, out, err) = run(enfeed()
        .args(["code-issuers", "add", "Ward 3"])
        .args(server_args));
    assert!(ok, "{err}");
    let added: serde_json::Value = serde_json::from_str(&out).unwrap();
    let token = added["token"].as_str().unwrap();
    let (ok, out, err) = run(enfeed().args(["code-issuers", "list"]).args(server_args));
    assert!(ok, "{err}");
    assert!(out.contains("Ward 3") && !out.contains(token), "{out}");
    let (ok, _, err) = run(enfeed()
        .args(["codes", "issue", "--admin-token", token])
        .args(server_args));
    assert!(ok, "{err}");
    let (ok, _, err) = run(enfeed()
        .args(["code-issuers", "revoke", "Ward 3"])
        .args(server_args));
    assert!(ok, "{err}");
    let (ok, _, err) = run(enfeed()
        .args(["codes", "issue", "--admin-token", token])
        .args(server_args));
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
    drop(server);
}

#[test]
fn code_issuers_are_added_listed_and_revoked_on_a_data_directory() {
    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().display().to_string();
    let region = ["--region", "CH", "--data", &data_arg];
    let (ok, out, err) = run(enfeed()
        .args(["code-issuers", "add", "Test centre 1"])
        .args(region));
    assert!(ok, "{err}");
    let added: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(added["token"].as_str().unwrap().len(), 32);
    let (ok, _, err) = run(enfeed()
        .args(["code-issuers", "add", "Test centre 1"])
        .args(region));
    assert!(!ok);
    assert!(err.contains("exists"), "{err}");
    let (ok, _, err) = run(enfeed()
        .args(["code-issuers", "revoke", "Test centre 1"])
        .args(region));
    assert!(ok, "{err}");
    let (ok, out, err) = run(enfeed().args(["code-issuers", "list"]).args(region));
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["issuers"][0]["name"], "Test centre 1");
    assert!(list["issuers"][0]["revokedAt"].is_u64());
    let (ok, _, err) = run(enfeed()
        .args(["code-issuers", "revoke", "nobody"])
        .args(region));
    assert!(!ok);
    assert!(err.contains("no code issuer named"), "{err}");
}

/// Starts `enfeed serve` with `args`, waiting until it logs `ready`.
fn serve(args: &[String], ready: &str) -> Server {
    let mut child = enfeed()
        .arg("serve")
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        let mut lines = stderr.lines().map_while(Result::ok);
        let _ = tx.send(lines.by_ref().any(|line| line.contains(&ready)));
        lines.for_each(drop);
    });
    assert!(
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or(false),
        "enfeed serve did not start"
    );
    server
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Three `enfeed serve` processes pulling each other's per-region feeds over mutual TLS: keys
/// uploaded in BE for AT reach AT's phones, and only AT's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_serve_processes_replicate_over_mutual_tls() {
    use base64::Engine as _;
    let root = tempfile::tempdir().unwrap();
    let pki = enfeed_sim::world::BackendCa::new(&root.path().join("pki")).unwrap();
    let regions = ["AT", "BE", "CZ"];
    let ports: Vec<(u16, u16)> = regions.iter().map(|_| (free_port(), free_port())).collect();
    for region in regions {
        let keys = root
            .path()
            .join(region)
            .join(enfeed::adapters::local::SIGNING_KEYS);
        let signer = enfeed::adapters::local::signing_keys::open_or_create(&keys, region).unwrap();
        std::fs::write(
            root.path().join(format!("{region}.pem")),
            signer.verification_keys()[0].to_pem(),
        )
        .unwrap();
    }
    let mut servers = Vec::new();
    for (i, region) in regions.iter().enumerate() {
        let (server_cert, server_key) = pki
            .issue(&format!("{region}-server"), "localhost", true)
            .unwrap();
        let (client_cert, client_key) = pki
            .issue(&format!("{region}-client"), region, false)
            .unwrap();
        let mut peers = String::new();
        for (j, producer) in regions.iter().enumerate().filter(|(j, _)| *j != i) {
            peers.push_str(&format!(
                "[[peer]]\nregion = \"{producer}\"\nurl = \"https://127.0.0.1:{}\"\nreplication = \"partial\"\n\
                 verification_keys = [\"{producer}.pem\"]\nclient_cert = {client_cert:?}\nclient_key = {client_key:?}\n\
                 server_ca = {:?}\n",
                ports[j].1,
                pki.ca_pem()
            ));
        }
        let peers_file = root.path().join(format!("{region}-peers.toml"));
        std::fs::write(&peers_file, peers).unwrap();
        let path = |p: &Path| p.display().to_string();
        let args: Vec<String> = vec![
            "--region".into(),
            region.to_string(),
            "--data".into(),
            path(&root.path().join(region)),
            "--listen".into(),
            format!("127.0.0.1:{}", ports[i].0),
            "--backend-listen".into(),
            format!("127.0.0.1:{}", ports[i].1),
            "--tls-cert".into(),
            path(&server_cert),
            "--tls-key".into(),
            path(&server_key),
            "--client-ca".into(),
            path(&pki.ca_pem()),
            "--peers".into(),
            path(&peers_file),
            "--admin-token".into(),
            ADMIN_TOKEN.into(),
            "--padding-min".into(),
            "0".into(),
        ];
        servers.push(serve(&args, "serving backend feeds over mutual TLS"));
    }
    let http = reqwest::Client::new();
    let url = |i: usize, path: &str| format!("http://127.0.0.1:{}/{path}", ports[i].0);
    let admin = async |i: usize, path: &str| {
        let response = http
            .post(url(i, path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json::<serde_json::Value>().await.unwrap()
    };

    // Bob uploads at home in BE, declaring BE and AT.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let yesterday = (now / 600 / 144 - 1) * 144;
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 16]);
    let code = admin(1, "v1/admin/codes").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let body = serde_json::json!({
        "temporaryExposureKeys": [{"key": key, "rollingStartNumber": yesterday, "rollingPeriod": 144}],
        "regions": ["BE", "AT"],
        "verificationPayload": code,
    });
    let response = http
        .post(url(1, "v1/publish"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    admin(1, "v1/admin/run/dataprep").await;
    for i in [0, 2] {
        let report = admin(i, "v1/admin/run/consumer").await;
        assert!(
            report["peers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["error"].is_null()),
            "{report}"
        );
        admin(i, "v1/admin/run/dataprep").await;
    }
    let public_keys = async |i: usize| {
        let index: serde_json::Value = http
            .get(url(i, "v1/keys"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut keys = Vec::new();
        for n in index["chunks"].as_array().unwrap() {
            let zip = http
                .get(url(i, &format!("v1/keys/{n}")))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let file = enfeed::domain::export::read_export(&zip, &Default::default()).unwrap();
            keys.extend(file.keys.into_iter().map(|k| k.key_data));
        }
        keys
    };
    assert_eq!(
        public_keys(0).await,
        vec![[42u8; 16]],
        "AT's phones get Bob's key"
    );
    assert!(public_keys(2).await.is_empty(), "CZ was not declared");
    drop(servers);
}

#[test]
fn a_registry_is_made_and_followed_through_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    let ok = |command: &mut Command| {
        let (ok, out, err) = run(command);
        assert!(ok, "{err}");
        out
    };
    for holder in ["root", "targets", "snapshot", "timestamp", "eu", "de"] {
        ok(enfeed().args(["registry", "keygen"]).arg(at(holder)));
    }
    assert!(at("eu.pub.json").exists());
    ok(enfeed()
        .args(["registry", "create", "--repo"])
        .arg(at("registry"))
        .arg("--root-key")
        .arg(at("root"))
        .arg("--targets-key")
        .arg(at("targets"))
        .arg("--snapshot-key")
        .arg(at("snapshot"))
        .arg("--timestamp-key")
        .arg(at("timestamp")));
    let publish = |submission: &str| {
        ok(enfeed()
            .args(["registry", "publish", "--repo"])
            .arg(at("registry"))
            .arg("--snapshot-key")
            .arg(at("snapshot"))
            .arg("--timestamp-key")
            .arg(at("timestamp"))
            .arg(at(submission)))
    };
    let delegate = |parent: &str, role: &str, key: &str, out: &str| {
        ok(enfeed()
            .args(["registry", "delegate", "--repo"])
            .arg(at("registry"))
            .args(["--parent", parent, "--role", role, "--key"])
            .arg(at(parent))
            .arg("--role-key")
            .arg(at(&format!("{key}.pub.json")))
            .arg("--out")
            .arg(at(out)))
    };
    delegate("targets", "eu", "eu", "join-eu");
    ok(enfeed()
        .args(["registry", "sign", "--repo"])
        .arg(at("registry"))
        .args(["--role", "eu", "--key"])
        .arg(at("eu"))
        .arg("--out")
        .arg(at("join-eu")));
    publish("join-eu");

    let signer =
        enfeed::adapters::local::signing_keys::open_or_create(&at("de-signing"), "DE").unwrap();
    let entry = |region: &str| {
        serde_json::json!({
            "region": region,
            "backend_url": "http://127.0.0.1:9",
            "public_url": "http://127.0.0.1:9",
            "insecure_http": true,
            "verification_keys": [{
                "key_id": "DE", "key_version": "v1",
                "public_key_pem": signer.verification_keys()[0].to_pem(),
            }],
        })
        .to_string()
    };
    std::fs::write(at("de.json"), entry("DE")).unwrap();
    std::fs::write(at("fr.json"), entry("FR")).unwrap();
    delegate("eu", "DE", "de", "join-de");
    let sign_de = |entry: &str| {
        run(enfeed()
            .args(["registry", "sign", "--repo"])
            .arg(at("registry"))
            .args(["--role", "DE", "--cluster", "eu", "--key"])
            .arg(at("de"))
            .arg("--entry")
            .arg(at(entry))
            .arg("--out")
            .arg(at("join-de")))
    };
    let (refused, _, err) = sign_de("fr.json");
    assert!(!refused && err.contains("claims region FR"), "{err}");
    let (signed, _, err) = sign_de("de.json");
    assert!(signed, "{err}");
    let published = publish("join-de");
    assert!(published.contains("\"DE\""), "{published}");

    // A region follows it: CH pulls DE (which is down), and says so.
    let (ok_consume, out, err) = run(enfeed()
        .args(["consume", "--region", "CH", "--data"])
        .arg(at("ch"))
        .arg("--registry")
        .arg(format!("file://{}", at("registry").display()))
        .arg("--registry-root")
        .arg(at("registry").join("root.json")));
    assert!(ok_consume, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["registry"]["regions"],
        serde_json::json!(["DE"]),
        "{out}"
    );
    assert_eq!(report["peers"][0]["region"], "DE", "{out}");
    assert!(report["peers"][0]["error"].is_string(), "{out}");
}
