"""Process start-to-ready of each Lambda function: the wall time from spawning its binary until
its first `GET /2018-06-01/runtime/invocation/next` to the Runtime API, which is when Lambda
considers the function's init done. Each function runs on a moto server with the environment
template.yaml gives it (ingest and data-prep read the signing keys from SSM at init), and is
then handed one cheap event, so the time to its first response is measured too.

The arm64 artifacts of `make build` do not run on an x86_64 machine: the figures are for the
same functions built for the host (release, stripped). If qemu-aarch64-static and the arm64
C library (Debian: qemu-user-static, libc6-arm64-cross) are installed, the arm64 artifacts are
also measured under emulation, which says nothing about their speed on Graviton.
`make bench-lambda` builds the host binaries and runs this.

usage: bench_lambda.py [--runs N] HOST_BINARY_DIR [LAMBDA_DIR]
"""
import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from localaws import (CODE_PEPPER_PARAMETER, SIGNING_KEYS_PATH, RuntimeApi, api_event,
                      create_resources, function_env,
                      moto_server, scheduled_event)

FUNCTIONS = ["ingest", "codes", "dataprep", "consumer", "feeds"]
LOADER = "lib/ld-linux-aarch64.so.1"


def cases(env):
    """(row, binary name, environment, first event, what the event costs), as deployed."""
    signing = dict(env, ENFEED_SIGNING_KEYS_PATH=SIGNING_KEYS_PATH)
    codes_env = dict(env, ENFEED_CODE_PEPPER_PARAMETER=CODE_PEPPER_PARAMETER)
    ingest_env = dict(signing, ENFEED_CODE_PEPPER_PARAMETER=CODE_PEPPER_PARAMETER)
    index = api_event("GET", "/v1/keys")
    return [
        ("ingest", "ingest", ingest_env, index, "GET /v1/keys: one S3 GET"),
        ("ingest, no SSM read", "ingest", env, index, "GET /v1/keys: one S3 GET"),
        ("codes", "codes", codes_env, api_event("POST", "/v1/admin/codes", iam_user="ha"),
         "POST /v1/admin/codes: one DynamoDB write"),
        ("dataprep", "dataprep", signing, scheduled_event(),
         "schedule, empty store: about 80 DynamoDB and S3 requests"),
        ("consumer", "consumer", dict(env, ENFEED_CONSUMER_TABLE="enfeed-consumer"),
         scheduled_event(), "schedule, no peers: no AWS call"),
        ("feeds", "feeds", env, index, "GET /v1/keys: one S3 GET"),
    ]


def start_once(command, env, event):
    """Spawns the function once: (start-to-ready, start-to-first-response) in seconds."""
    api = RuntimeApi([event])
    env = dict(env, AWS_LAMBDA_RUNTIME_API=api.address)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = started + 120
        while not api.done.wait(0.01):
            if process.poll() is not None or time.perf_counter() > deadline:
                break
    finally:
        process.kill()
        log = process.communicate()[0].decode(errors="replace")
        api.close()
    if api.ready_at is None or not api.done.is_set():
        sys.exit(f"{' '.join(command)} did not start and answer; its log:\n{log}")
    kind, body = api.responses[0]
    status = body.get("statusCode", 200) if isinstance(body, dict) else 200
    if kind != "response" or status >= 500:
        sys.exit(f"{' '.join(command)} failed: {body}\n{log}")
    return api.ready_at - started, api.answered_at - started


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def figures(seconds):
    ms = [s * 1000 for s in seconds]
    return f"{min(ms):.1f} | {statistics.median(ms):.1f} | {percentile(ms, 0.9):.1f}"


def measure(title, binary_of, env, runs):
    print(f"\n{title}: {runs} starts of each, after one start not counted; ms\n")
    print("| function | ready: min | median | p90 | first response: min | median | p90 "
          "| first event |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for row, name, case_env, event, cost in cases(env):
        command = binary_of(name)
        start_once(command, case_env, event)
        times = [start_once(command, case_env, event) for _ in range(runs)]
        ready, answered = zip(*times)
        print(f"| {row} | {figures(ready)} | {figures(answered)} | {cost} |", flush=True)


def size(path):
    return f"{path.stat().st_size / 1e6:.1f} MB" if path.is_file() else "-"


def emulator():
    """The qemu command that runs an arm64 binary here, or None with the reason."""
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if not qemu:
        return None, "no qemu-aarch64-static (Debian: qemu-user-static)"
    prefix = Path(os.environ.get("QEMU_LD_PREFIX", "/usr/aarch64-linux-gnu"))
    if not (prefix / LOADER).exists() and not Path("/" + LOADER).exists():
        return None, f"no arm64 C library under {prefix} (Debian: libc6-arm64-cross)"
    return [qemu, "-L", str(prefix)], None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="starts of each function")
    parser.add_argument("host_bins", type=Path, help="the host release binaries")
    parser.add_argument("lambda_dir", type=Path, nargs="?", help="cargo-lambda's output")
    args = parser.parse_args()
    for name in FUNCTIONS:
        if not (args.host_bins / name).is_file():
            sys.exit(f"no {args.host_bins / name}: build the functions for the host first")
    lambda_dir = args.lambda_dir or args.host_bins.parent / "lambda"

    print("Sizes (stripped; arm64 from `make build` and `make package`, '-' if not built)\n")
    print("| function | host binary | arm64 bootstrap | arm64 bootstrap.zip |")
    print("|---|---:|---:|---:|")
    for name in FUNCTIONS:
        print(f"| {name} | {size(args.host_bins / name)} | "
              f"{size(lambda_dir / name / 'bootstrap')} | "
              f"{size(lambda_dir / name / 'bootstrap.zip')} |")

    with moto_server() as endpoint:
        shutil.rmtree(create_resources(endpoint).parent)
        env = function_env(endpoint)
        measure(f"Host-arch ({os.uname().machine}) release binaries",
                lambda name: [str(args.host_bins / name)], env, args.runs)
        arm64 = [lambda_dir / name / "bootstrap" for name in FUNCTIONS]
        qemu, missing = emulator()
        if not all(p.is_file() for p in arm64):
            print("\narm64 under emulation: skipped, `make build` has not been run")
        elif qemu is None:
            print(f"\narm64 under emulation: skipped, {missing}")
        else:
            measure("arm64 under emulation (qemu-user; not representative of Graviton speed)",
                    lambda name: qemu + [str(lambda_dir / name / "bootstrap")], env, args.runs)


if __name__ == "__main__":
    main()
