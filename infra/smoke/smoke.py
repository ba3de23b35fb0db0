"""Smoke test of the real function binaries on a moto server, with no AWS: each binary runs
under a minimal Lambda Runtime API that hands it real API Gateway v2 and EventBridge events.
Codes are issued (over IAM, and by a code issuer with their token), two people upload (one
upload is retried), two data-prep invocations run at once, and gaen_check.py reads the chunks
back from the bucket and verifies them with the public key. `make smoke` builds the binaries and runs this.

usage: smoke.py BINARY_DIR
"""
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from localaws import (CODE_PEPPER_PARAMETER, SIGNING_KEYS_PATH, RuntimeApi, api_event, create_resources, function_env,
                      moto_server, scheduled_event)

HERE = Path(__file__).resolve().parent


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
    api.close()
    if not finished:
        sys.exit(f"the function did not answer every event; its log:\n{log}")
    for kind, body in api.responses:
        if kind != "response":
            sys.exit(f"the function failed: {body}\n{log}")
    return [body for _, body in api.responses]


def invoke(binary, events, env):
    return finish(*start(binary, events, env))


def person_keys(count):
    today = int(time.time()) // 600 // 144 * 144
    return [{"key": base64.b64encode(os.urandom(16)).decode(),
             "rollingStartNumber": today - day * 144, "rollingPeriod": 144,
             "transmissionRisk": 3} for day in range(1, count + 1)]


def main():
    bins = Path(sys.argv[1])
    with moto_server() as endpoint:
        run(bins, endpoint)


def run(bins, endpoint):
    public_pem = create_resources(endpoint)
    env = function_env(endpoint)
    signing = dict(env, ENFEED_SIGNING_KEYS_PATH=SIGNING_KEYS_PATH)
    codes_env = dict(env, ENFEED_CODE_PEPPER_PARAMETER=CODE_PEPPER_PARAMETER)
    ingest_env = dict(signing, ENFEED_CODE_PEPPER_PARAMETER=CODE_PEPPER_PARAMETER)

    # One code from the health authority's system (IAM); the operator adds a code issuer
    # (IAM), who issues the other with their token, as the console does.
    codes_env = dict(codes_env, ENFEED_CONSOLE_ORIGINS="https://d111111abcdef8.cloudfront.net")
    answers = invoke(bins / "codes", [
        api_event("POST", "/v1/admin/codes", iam_user="ha"),
        api_event("POST", "/v1/admin/issuers", {"name": "Smoke centre"}, iam_user="operator"),
    ], codes_env)
    first, issuer = [json.loads(a["body"]) for a in answers]
    issued = api_event("POST", "/v1/issuer/codes", {"testType": "confirmed"})
    issued["headers"]["authorization"] = f"Bearer {issuer['token']}"
    listed = api_event("GET", "/v1/issuer/codes")
    listed["headers"]["authorization"] = f"Bearer {issuer['token']}"
    answers = invoke(bins / "codes", [issued, listed], codes_env)
    second, today = [json.loads(a["body"]) for a in answers]
    assert [c["status"] for c in today["codes"]] == ["unused"], today
    codes = [first["code"], second["code"]]
    print("codes issued:", codes)
    uploads = [person_keys(5), person_keys(3)]
    bodies = [{"temporaryExposureKeys": keys, "regions": ["CH", "DE"], "verificationPayload": code}
              for keys, code in zip(uploads, codes)]
    events = [api_event("POST", "/v1/publish", body) for body in bodies + bodies[:1]]
    answers = [json.loads(r["body"]) for r in invoke(bins / "ingest", events, ingest_env)]
    # Every answer is padded with random bytes and carries a revision token (the e2e tests
    # check what it revises); what it says is the rest.
    assert all(len(a.pop("padding", "")) >= 16 for a in answers), answers
    assert all(a.pop("revisionToken", "") for a in answers), answers
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
