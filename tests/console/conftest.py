"""A real `enfeed serve` on a fresh data directory, and headless Chromium (Debian's package)
driven by Playwright, for the console's tests. Nothing is skipped: a missing server binary or
browser fails the run."""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ADMIN_TOKEN = "console-test-admin-token-0123456789abcdef"


def required_path(variable):
    value = os.environ.get(variable)
    assert value, f"{variable} is not set: run the tests with `make test-console`"
    path = Path(value)
    assert path.is_file(), f"{variable}={value} does not exist"
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One region served by the `enfeed` binary."""

    def __init__(self, binary, data, port):
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(data / "serve.log", "wb")
        env = dict(os.environ, ENFEED_EMBARGO="0", ENFEED_LOG_FORMAT="json")
        self.process = subprocess.Popen(
            [
                str(binary), "serve", "--region", "CH",
                "--listen", f"127.0.0.1:{port}",
                "--data", str(data / "region"),
                "--admin-token", ADMIN_TOKEN,
            ],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, "enfeed serve exited: see serve.log"
            try:
                self.call("GET", "/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "enfeed serve did not answer in 30 s"
                time.sleep(0.1)

    def call(self, method, path, body=None, token=None):
        """An HTTP request; returns the status and the parsed JSON (or text) answer."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def metric(self, name, **labels):
        """A sample of /metrics, 0 when it has none yet."""
        _, text = self.call("GET", "/metrics", token=ADMIN_TOKEN)
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        series = f"{name}{{{wanted}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return 0.0

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="session")
def server():
    binary = required_path("ENFEED_BIN")
    with tempfile.TemporaryDirectory(prefix="enfeed-console-") as data:
        region = Server(binary, Path(data), free_port())
        yield region
        region.stop()


@pytest.fixture(scope="session")
def browser():
    chromium = required_path("CHROMIUM")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots():
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS", "target/console-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
