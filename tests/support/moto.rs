//! A moto server (S3, DynamoDB and SSM over the real AWS wire protocol) on a free loopback
//! port, for the tests of the serverless adapters and handlers. One server per test, stopped
//! when the [`Moto`] is dropped. `make test` installs it into `.venv` at the repository root;
//! `ENFEED_MOTO_SERVER` names another `moto_server` executable.
//!
//! The server is moto's own, run with one request at a time. moto serves requests on several
//! threads without isolating them (a DynamoDB transaction checks its conditions, then writes,
//! and restores a copy of the table when it fails), so two requests at once could both pass a
//! condition that DynamoDB lets only one pass. One at a time, each request is atomic, as in
//! DynamoDB and S3, and the races the tests stage are decided as AWS decides them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// The AWS region the tests pretend to be in.
pub const AWS_REGION: &str = "eu-central-2";

/// A running moto server.
pub struct Moto {
    pub endpoint: String,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `moto_server` executable: `ENFEED_MOTO_SERVER`, or the one `make test` installs.
pub fn moto_server() -> PathBuf {
    match std::env::var_os("ENFEED_MOTO_SERVER") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server"),
    }
}

/// Runs `moto_server`'s main with werkzeug's single-threaded server.
const ONE_AT_A_TIME: &str = "\
import sys
import moto.server
from werkzeug import serving
def run_simple(*args, **kwargs):
    kwargs['threaded'] = False
    return serving.run_simple(*args, **kwargs)
moto.server.run_simple = run_simple
moto.server.main(sys.argv[1:])
";

/// Makes moto's DynamoDB transactions write in place: the copy of each table they would
/// restore on failure is the table itself.
const WITHOUT_TRANSACTION_COPIES: &str = "\
import copy
import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models.table import Table
class NoTableCopies:
    def deepcopy(self, x, *args, **kwargs):
        return x if isinstance(x, Table) else copy.deepcopy(x, *args, **kwargs)
dynamodb_models.copy = NoTableCopies()
";

/// Makes moto's DynamoDB queries read only the items they can answer with: a query of the
/// table reads its partition, not every item of the table sorted, and a query of an index
/// reads every item unsorted (the query sorts what it keeps).
const QUERIES_BY_PARTITION: &str = "\
from moto.dynamodb.models.table import Table
_query, _all_items = Table.query, Table.all_items
def query(self, hash_key, *args, **kwargs):
    index_name = args[6] if len(args) > 6 else kwargs.get('index_name')
    self._querying = ('index',) if index_name else ('table', hash_key)
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        self._querying = None
def all_items(self):
    querying = getattr(self, '_querying', None)
    if querying is None:
        return _all_items(self)
    if querying[0] == 'table':
        return list(self.items.get(querying[1], {}).values())
    return [item for part in self.items.values() for item in part.values()]
Table.query, Table.all_items = query, all_items
";

/// Makes moto answer DynamoDB queries with their items as JSON directly, rather than through
/// its serializer of every AWS protocol, which walks each attribute of each item against the
/// API's model (most of the time a page of thousands of key items took).
const QUERY_ANSWERS_AS_JSON: &str = "\
import base64, json
from moto.dynamodb.responses import DynamoHandler
def _plain(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
_dynamo_query = DynamoHandler.query
def dynamo_query(self):
    return json.dumps(_plain(_dynamo_query(self).result))
DynamoHandler.query = dynamo_query
";

/// Makes moto parse each condition expression once: it parsed the same few again for every
/// item of every transaction.
const CONDITIONS_PARSED_ONCE: &str = "\
import functools, json
import moto.dynamodb.models as dynamodb_models
import moto.dynamodb.models.table as dynamodb_table
_parse = dynamodb_models.get_filter_expression
@functools.lru_cache(maxsize=1024)
def _parsed(expr, names, values):
    return _parse(expr, json.loads(names), json.loads(values))
def get_filter_expression(expr, names, values):
    return _parsed(expr, json.dumps(names, sort_keys=True), json.dumps(values, sort_keys=True))
dynamodb_models.get_filter_expression = get_filter_expression
dynamodb_table.get_filter_expression = get_filter_expression
";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Moto {
    /// Starts a server and waits until it answers. Fails the test, never skips it, if the
    /// server cannot be started.
    pub async fn start() -> Self {
        Self::start_with(ONE_AT_A_TIME).await
    }

    /// A server for tables of a million keys, for benchmarks: as [`Moto::start`], with the
    /// costs of moto's DynamoDB that grow with the table, or with each item, taken out (the
    /// constants above): transactions that first copy every table they write to (moto's way
    /// of undoing one that fails), queries that sort every item of the table, a serializer
    /// that walks each attribute of a query's answer, a condition parsed again for each item.
    /// A transaction that fails on it leaves its earlier writes in place, so it is for
    /// benchmarks in which none fails. The changes reach into moto's internals as of the
    /// version `make test` installs.
    pub async fn start_for_bulk() -> Self {
        Self::start_with(&format!(
            "{WITHOUT_TRANSACTION_COPIES}{QUERIES_BY_PARTITION}{QUERY_ANSWERS_AS_JSON}{CONDITIONS_PARSED_ONCE}{ONE_AT_A_TIME}"
        ))
        .await
    }

    async fn start_with(prelude: &str) -> Self {
        let program = moto_server();
        assert!(
            program.exists(),
            "{} does not exist: run `make test`, which installs moto[server] into .venv \
             (or set ENFEED_MOTO_SERVER to a moto_server executable)",
            program.display()
        );
        let mut last_error = String::new();
        // A port found free may be taken before moto binds it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("a temporary file");
            // The Python next to moto_server, which is the one it was installed into.
            let python = program.with_file_name("python");
            let child = Command::new(&python)
                .args(["-c", prelude, "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("the log file"))
                .stderr(log.reopen().expect("the log file"))
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {}: {e}; run `make test` to install moto",
                        python.display()
                    )
                });
            let mut moto = Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                child,
                log,
            };
            match moto.wait_ready().await {
                Ok(()) => return moto,
                Err(e) => last_error = e,
            }
        }
        panic!("moto_server did not start: {last_error}; run `make test` to (re)install it");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
                return Err(format!("it exited with {status}: {log}"));
            }
            let ready = http
                .get(format!("{}/moto-api/", self.endpoint))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("it did not answer within 60 s".into())
    }

    /// SDK settings that reach this server only: static dummy credentials, a fixed region,
    /// the server's endpoint.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(AWS_REGION))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .endpoint_url(&self.endpoint)
            .http_client(enfeed::adapters::aws::http_client())
            .load()
            .await
    }

    /// Clears every resource (`POST /moto-api/reset`).
    pub async fn reset(&self) {
        let response = reqwest::Client::new()
            .post(format!("{}/moto-api/reset", self.endpoint))
            .send()
            .await
            .expect("moto answers");
        assert!(response.status().is_success());
    }
}
