"""A real `enfeed serve` on a fresh data directory, pulling from a peer region (another
`enfeed serve`, whose published chunks a plain HTTP server mirrors as a Google-style bucket),
and headless Chromium (Debian's package) driven by Playwright, for the console's tests. Nothing
is skipped: a missing server binary or browser fails the run."""

import functools
import http.server
import json
import threading
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

    def __init__(self, binary, data, region, peers=None, **settings):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(data / f"{region}.log", "wb")
        env = dict(os.environ, ENFEED_EMBARGO="0", ENFEED_LOG_FORMAT="json", **settings)
        command = [
            str(binary), "serve", "--region", region,
            "--listen", f"127.0.0.1:{port}",
            "--data", str(data / region),
            "--admin-token", ADMIN_TOKEN,
        ]
        if peers:
            command += ["--peers", str(peers)]
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                self.log.flush()
                log = Path(self.log.name).read_text()[-2000:]
                raise AssertionError(f"enfeed serve exited:\n{log}")
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


class Bucket:
    """A peer's published chunks as a Google-style bucket: `index.txt` listing export files,
    served over plain HTTP from a folder."""

    def __init__(self, folder):
        self.folder = folder
        (folder / "index.txt").write_text("")
        handler = functools.partial(QuietHandler, directory=str(folder))
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def mirror(self, region):
        """Copies every chunk of `region`'s public feed into the bucket."""
        _, index = region.call("GET", "/v1/keys/index.txt")
        paths = index.split()
        for path in paths:
            request = urllib.request.Request(f"{region.base}/{path}")
            with urllib.request.urlopen(request, timeout=30) as response:
                target = self.folder / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(response.read())
        (self.folder / "index.txt").write_text("".join(p + "\n" for p in paths))
        return len(paths)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def peer_and_server():
    """The peer region DE, its bucket, and the region CH pulling from that bucket."""
    binary = required_path("ENFEED_BIN")
    with tempfile.TemporaryDirectory(prefix="enfeed-console-") as data:
        data = Path(data)
        # Without padding, every key the peer publishes is one a phone uploaded.
        peer = Server(binary, data, "DE", ENFEED_PADDING_MIN="0")
        _, keys = peer.call("GET", "/v1/verification-keys")
        (data / "de.pem").write_text(keys["keys"][0]["publicKeyPem"])
        bucket_folder = data / "bucket"
        bucket_folder.mkdir()
        bucket = Bucket(bucket_folder)
        (data / "peers.toml").write_text(
            "[[peer]]\n"
            'region = "DE"\n'
            f'url = "{bucket.url}"\n'
            'replication = "a2a"\n'
            'format = "gaen-index"\n'
            'verification_keys = ["de.pem"]\n'
            # The bucket is on this machine's loopback, in plain HTTP.
            "insecure_http = true\n"
        )
        # The static console's origin may call the region's API from the browser.
        static_port = free_port()
        region = Server(
            binary, data, "CH", peers=data / "peers.toml",
            ENFEED_CONSOLE_ORIGINS=f"http://127.0.0.1:{static_port}",
        )
        static = StaticConsole(binary, data / "console-static", region, static_port)
        yield peer, bucket, region, static
        static.http.shutdown()
        region.stop()
        bucket.http.shutdown()
        peer.stop()


class StaticConsole:
    """The console as `enfeed console-dist` writes it for the serverless mode, calling the API
    of `region`, served by a plain static HTTP server on another origin (no headers of its
    own: the pages' policy is their <meta> element's)."""

    def __init__(self, binary, folder, region, port):
        subprocess.run(
            [str(binary), "console-dist", "--api-url", region.base, "--out", str(folder)],
            check=True, stdout=subprocess.DEVNULL,
        )
        handler = functools.partial(QuietHandler, directory=str(folder))
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.base = f"http://127.0.0.1:{port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture(scope="session")
def static_console(peer_and_server):
    return peer_and_server[3]


@pytest.fixture(scope="session")
def server(peer_and_server):
    return peer_and_server[2]


@pytest.fixture(scope="session")
def peer(peer_and_server):
    return peer_and_server[0], peer_and_server[1]


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
