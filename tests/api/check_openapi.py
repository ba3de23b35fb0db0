"""Checks docs/openapi.yaml against a real server: starts `enfeed serve` on loopback with a fresh
data directory, gives it a published chunk in every feed, and runs schemathesis against it with
every check on. Any 5xx, any answer the document does not describe, a server that dies or
panics, or a tool that is missing fails the run.

    python check_openapi.py --enfeed target/debug/enfeed --st .venv/bin/st --schema docs/openapi.yaml
"""

import argparse
import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REGION = "CH"
# Keys a day and two days old, as a phone uploads them.
INTERVAL = 600
DAY = 144


def fail(message):
    print(f"check_openapi: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(url, method="GET", body=None, token=None):
    request = urllib.request.Request(url, method=method, data=body)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_ready(server, base, log_path):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail(f"enfeed serve exited with {server.returncode}:\n{open(log_path).read()}")
        try:
            call(f"{base}/health")
            return
        except OSError:
            time.sleep(0.2)
    fail(f"enfeed serve did not answer within 120 s:\n{open(log_path).read()}")


def publish_one_upload(base, token):
    """A code, an upload with it, and a data-prep run: every feed then has chunk 1."""
    status, body = call(f"{base}/v1/admin/codes", "POST", b"", token)
    if status != 201:
        fail(f"issuing a code answered {status}: {body!r}")
    code = json.loads(body)["code"]
    today = int(time.time()) // INTERVAL // DAY * DAY
    upload = {
        "temporaryExposureKeys": [
            {
                "key": base64.b64encode(secrets.token_bytes(16)).decode(),
                "rollingStartNumber": today - days * DAY,
                "rollingPeriod": DAY,
                "transmissionRisk": 2,
            }
            for days in (1, 2)
        ],
        "verificationPayload": code,
        "regions": [REGION, "DE"],
    }
    status, body = call(f"{base}/v1/publish", "POST", json.dumps(upload).encode())
    if status != 200:
        fail(f"the seed upload answered {status}: {body[:300]!r}")
    status, body = call(f"{base}/v1/admin/run/dataprep", "POST", b"", token)
    if status != 200 or not json.loads(body)["chunks"]:
        fail(f"data-prep answered {status}: {body[:300]!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enfeed", required=True, help="the enfeed binary")
    parser.add_argument("--st", required=True, help="schemathesis' st command")
    parser.add_argument("--schema", required=True, help="the OpenAPI document")
    parser.add_argument("--max-examples", type=int, default=100, help="examples per operation")
    parser.add_argument("--seed", type=int, default=1, help="schemathesis' random seed")
    args = parser.parse_args()
    args.enfeed, args.st, args.schema = map(os.path.abspath, (args.enfeed, args.st, args.schema))
    for what, path in (("enfeed binary", args.enfeed), ("schemathesis", args.st)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            fail(f"the {what} is missing at {path}")
    if not os.path.isfile(args.schema):
        fail(f"the OpenAPI document is missing at {args.schema}")

    token = secrets.token_hex(24)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    work = tempfile.mkdtemp(prefix="enfeed-openapi-")
    log_path = os.path.join(work, "server.log")
    env = dict(os.environ, ENFEED_LOG_FORMAT="json", ENFEED_PADDING_MIN="10")
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [
                args.enfeed,
                "serve",
                "--region", REGION,
                "--listen", f"127.0.0.1:{port}",
                "--data", os.path.join(work, "data"),
                "--admin-token", token,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_ready(server, base, log_path)
        publish_one_upload(base, token)
        config = os.path.join(work, "schemathesis.toml")
        with open(config, "w") as out:
            out.write(SCHEMATHESIS_CONFIG.replace("TOKEN", token))
        report = os.path.join(work, "report")
        st = subprocess.run(
            [
                args.st,
                "--config-file", config,
                "run", args.schema,
                "--url", base,
                "--checks", "all",
                "--max-examples", str(args.max_examples),
                "--workers", "1",
                "--seed", str(args.seed),
                "--report", "junit",
                "--report-dir", report,
                "--no-color",
                "--generation-database", "none",
            ],
            cwd=work,
            env=dict(os.environ, SCHEMATHESIS_HOOKS=""),
        )
        if server.poll() is not None:
            fail(f"enfeed serve died during the run:\n{open(log_path).read()[-4000:]}")
        if st.returncode != 0:
            fail(f"schemathesis found failures (exit {st.returncode}); server log: {log_path}")
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
    log_text = open(log_path).read()
    if "panicked" in log_text:
        fail(f"the server panicked during the run; its log: {log_path}")
    shutil.rmtree(work)
    print("check_openapi: the server answered as docs/openapi.yaml says, no 5xx")


# Every operation gets the admin token, so the admin routes and backend feeds are reached (the
# `ignored_auth` check still sends requests without it, and expects 401). Rules a schema cannot
# say refuse some schema-valid requests: an upload needs a code that exists and keys of 16
# bytes in time (400, 401, and 429 after 10 wrong codes), a code's symptom date must not be in
# the future (400). Chaff (a non-empty `X-Chaff`) is answered 200 whatever its body, by design:
# the generated uploads are real ones (tests/e2e/protocol.rs checks chaff).
SCHEMATHESIS_CONFIG = """
[auth.openapi.adminToken]
bearer = "TOKEN"

[[operations]]
include-operation-id = "publish"
parameters = { "header.X-Chaff" = "" }
checks.positive_data_acceptance.expected-statuses = [200, 400, 401, 429]

[[operations]]
include-operation-id = "issueCode"
checks.positive_data_acceptance.expected-statuses = [201, 400]

[[operations]]
include-operation-id = "issueIssuerCode"
checks.positive_data_acceptance.expected-statuses = [201, 400]
"""

if __name__ == "__main__":
    main()
