"""The AWS side of the functions, on this machine: a moto server holding the tables, the bucket
and the signing key the functions read at init, the environment that points them at it, and a
minimal Lambda Runtime API that hands them events. smoke.py and bench_lambda.py use it.
"""
import contextlib
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

REGION = "eu-central-2"
SIGNING_KEYS_PATH = "/enfeed/CH/signing-keys"
CODE_PEPPER_PARAMETER = "/enfeed/CH/code-pepper"
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
    """Hands out `events` one by one at /invocation/next and collects the responses.

    `ready_at` is the time.perf_counter() of the first /invocation/next request (when Lambda
    considers the function's init done) and `answered_at` that of the first response.
    """

    def __init__(self, events):
        self.pending, self.responses, self.done = list(events), [], threading.Event()
        self.expected = len(self.pending)
        self.ready, self.ready_at, self.answered_at = threading.Event(), None, None
        self.closed = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if api.ready_at is None and self.path.endswith("/invocation/next"):
                    api.ready_at = time.perf_counter()
                    api.ready.set()
                if not self.path.endswith("/invocation/next") or not api.pending:
                    # No more work: keep the function waiting, as Lambda does.
                    api.closed.wait(30)
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
                if api.answered_at is None:
                    api.answered_at = time.perf_counter()
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

    def close(self):
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def moto_server():
    """A moto server on a free loopback port, answering one request at a time; yields its
    endpoint URL."""
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
        yield endpoint
    finally:
        moto.kill()
        moto.wait()


def create_resources(endpoint):
    """The key table, the consumer table, the feed bucket, a signing key under
    SIGNING_KEYS_PATH and the code pepper, as template.yaml and the operator create them.
    Returns the public key's PEM file."""
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
    ssm = boto3.client("ssm", **aws)
    ssm.put_parameter(Name=f"{SIGNING_KEYS_PATH}/v1", Value=pem, Type="SecureString")
    ssm.put_parameter(Name=CODE_PEPPER_PARAMETER, Value=os.urandom(32).hex(),
                      Type="SecureString")
    return public_pem


def function_env(endpoint):
    """The environment of a function on the moto server at `endpoint` (without the secrets:
    the signing keys path, which only ingest and data-prep get, and the code pepper, which
    only ingest and codes get)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ENFEED_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint, AWS_REGION=REGION, AWS_ACCESS_KEY_ID="smoke",
        AWS_SECRET_ACCESS_KEY="smoke", AWS_LAMBDA_FUNCTION_NAME="smoke",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256", AWS_LAMBDA_FUNCTION_VERSION="1",
        AWS_LAMBDA_LOG_STREAM_NAME="smoke", AWS_LAMBDA_LOG_GROUP_NAME="smoke",
        ENFEED_REGION="CH", ENFEED_TABLE="enfeed-keys", ENFEED_BUCKET="enfeed-feeds",
        ENFEED_S3_PATH_STYLE="true", ENFEED_PADDING_MIN="0")
    return env


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
