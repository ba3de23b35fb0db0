"""Smoke test of the real function binaries on a moto server, with no AWS: each binary runs
under a minimal Lambda Runtime API that hands it real API Gateway v2 and EventBridge events.
Codes are issued, two people upload (one upload is retried), two data-prep invocations run at
once, and gaen_check.py reads the chunks back from the bucket and verifies them with the public
key. `make smoke` builds the binaries and runs this.

usage: smoke.py BINARY_DIR
"""
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

HERE = Path(__file__).resolve().parent
REGION = "eu-central-2"
ONE_AT_A_TIME = """
import sys, moto.server
from werkzeug import serving
def run_simple(*args, **kwargs):
    kwargs['threaded'] = False
    return serving.run_simple(*args, **kwargs)
moto.server.run_simple = run_simple
moto.server.main(sys.argv[1:])
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RuntimeApi:
    """Hands out `events` one by one at /invocation/next and collects the responses."""

    def __init__(self, events):
        self.pending, self.responses, self.done = list(events), [], threading.Event()
        self.expected = len(self.pending)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.endswith("/invocation/next") or not api.pending:
                    # No more work: keep the function waiting, as Lambda does.
                    time.sleep(30)
                    return
                body = json.dumps(api.pending.pop(0)).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", str(uuid.uuid4()))
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 f"arn:aws:lambda:{REGION}:123456789012:function:smoke")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                kind = self.path.rsplit("/", 1)[-1]
                api.responses.append((kind, json.loads(body or b"null")))
                self.send_response(202)
                self.end_headers()
                if len(api.responses) == api.expected:
                    api.done.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server.server_address[1]}"


def start(binary, events, env):
    api = RuntimeApi(events)
    env = dict(env, AWS_LAMBDA_RUNTIME_API=api.address)
    process = subprocess.Popen([str(binary)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    return api, process


def finish(api, process):
    finished = api.done.wait(120)
    process.kill()
    log = process.communicate()[0].decode(errors="replace")
    if not finished:
        sys.exit(f"the function did not answer every event; its log:\n{log}")
    for kind, body in api.responses:
        if kind != "response":
            sys.exit(f"the function failed: {body}\n{log}")
    return [body for _, body in api.responses]


def invoke(binary, events, env):
    return finish(*start(binary, events, env))


def api_event(method, path, body=None, ip="198.51.100.7", iam_user=None):
    event = {
        "version": "2.0", "routeKey": f"{method} {path}", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json",
                    "host": "a1b2c3.execute-api.eu-central-2.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "a1b2c3",
            "domainName": "a1b2c3.execute-api.eu-central-2.amazonaws.com", "domainPrefix": "a1b2c3",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": ip,
                     "userAgent": "smoke"},
            "requestId": str(uuid.uuid4()), "routeKey": f"{method} {path}", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000)},
        "isBase64Encoded": False}
    if body is not None:
        event["body"] = json.dumps(body)
    if iam_user:
        event["requestContext"]["authorizer"] = {"iam": {
            "accessKey": "AKIAIOSFODNN7EXAMPLE", "accountId": "123456789012", "callerId": "C",
            "cognitoIdentity": None, "principalOrgId": None, "userId": "U",
            "userArn": f"arn:aws:iam::123456789012:user/{iam_user}"}}
    return event


def scheduled_event():
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:123456789012:rule/enfeed-dataprep"],
            "detail": {}}


def person_keys(count):
    today = int(time.time()) // 600 // 144 * 144
    return [{"key": base64.b64encode(os.urandom(16)).decode(),
             "rollingStartNumber": today - day * 144, "rollingPeriod": 144,
             "transmissionRisk": 3} for day in range(1, count + 1)]


def main():
    bins = Path(sys.argv[1])
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen([sys.executable, "-c", ONE_AT_A_TIME, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            sys.exit("moto did not start")
        run(bins, endpoint)
    finally:
        moto.kill()


def run(bins, endpoint):
    aws = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="smoke",
               aws_secret_access_key="smoke")
    ddb = boto3.client("dynamodb", **aws)
    attributes = [("pk", "S"), ("sk", "S"), ("xs", "S"), ("ttl", "N")]
    ddb.create_table(
        TableName="enfeed-keys", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in attributes],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "expiry", "Projection": {"ProjectionType": "KEYS_ONLY"},
            "KeySchema": [{"AttributeName": "xs", "KeyType": "HASH"},
                          {"AttributeName": "ttl", "KeyType": "RANGE"}]}])
    ddb.update_time_to_live(TableName="enfeed-keys", TimeToLiveSpecification={
        "AttributeName": "ttl", "Enabled": True})
    ddb.create_table(TableName="enfeed-consumer", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    s3 = boto3.client("s3", **aws)
    s3.create_bucket(Bucket="enfeed-feeds",
                     CreateBucketConfiguration={"LocationConstraint": REGION})
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public_pem = Path(tempfile.mkdtemp()) / "public.pem"
    public_pem.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    boto3.client("ssm", **aws).put_parameter(Name="/enfeed/CH/signing-keys/v1", Value=pem,
                                             Type="SecureString")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ENFEED_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint, AWS_REGION=REGION, AWS_ACCESS_KEY_ID="smoke",
        AWS_SECRET_ACCESS_KEY="smoke", AWS_LAMBDA_FUNCTION_NAME="smoke",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256", AWS_LAMBDA_FUNCTION_VERSION="1",
        AWS_LAMBDA_LOG_STREAM_NAME="smoke", AWS_LAMBDA_LOG_GROUP_NAME="smoke",
        ENFEED_REGION="CH", ENFEED_TABLE="enfeed-keys", ENFEED_BUCKET="enfeed-feeds",
        ENFEED_S3_PATH_STYLE="true", ENFEED_PADDING_MIN="0")
    signing = dict(env, ENFEED_SIGNING_KEYS_PATH="/enfeed/CH/signing-keys")

    codes = invoke(bins / "codes", [api_event("POST", "/v1/admin/codes", iam_user="ha")] * 2, env)
    codes = [json.loads(c["body"])["code"] for c in codes]
    print("codes issued:", codes)
    uploads = [person_keys(5), person_keys(3)]
    bodies = [{"temporaryExposureKeys": keys, "regions": ["CH", "DE"], "verificationPayload": code}
              for keys, code in zip(uploads, codes)]
    events = [api_event("POST", "/v1/publish", body) for body in bodies + bodies[:1]]
    answers = [json.loads(r["body"]) for r in invoke(bins / "ingest", events, signing)]
    print("uploads answered:", answers)
    assert answers == [{"insertedExposures": 5}, {"insertedExposures": 3},
                       {"insertedExposures": 5}], answers

    # EventBridge delivers the schedule twice, to two instances at once.
    running = [start(bins / "dataprep", [scheduled_event()], signing) for _ in range(2)]
    reports = [finish(*r)[0] for r in running]
    print("data-prep reports:", json.dumps(reports))
    report = invoke(bins / "consumer", [scheduled_event()],
                    dict(env, ENFEED_CONSUMER_TABLE="enfeed-consumer"))[0]
    print("consumer report:", report)

    out = subprocess.run([sys.executable, str(HERE / "gaen_check.py"), endpoint, "enfeed-feeds",
                          str(public_pem), "v1/keys", "v1/a2a/keys", "v1/DE/keys"],
                         capture_output=True, text=True)
    print(out.stdout, out.stderr, sep="")
    if out.returncode != 0:
        sys.exit("the independent GAEN check failed")
    uploaded = sorted(base64.b64decode(k["key"]).hex() for keys in uploads for k in keys)
    published = out.stdout.split("\n")[1].split()
    assert sorted(published) == uploaded, (published, uploaded)
    public_pem.unlink()
    print("smoke test passed: every uploaded key published once, chunks verified")


if __name__ == "__main__":
    main()
