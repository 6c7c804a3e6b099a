"""A real S3-compatible server for tests, and the environment DVC and git run in against it.

`S3Server` is moto's S3 app served over HTTP on 127.0.0.1, in this process: the app and request handler
`moto.server.ThreadedMotoServer` serves, plus what a remote-failure test needs and ThreadedMotoServer
lacks: it can go down right after the n-th object upload (a gate answers 503 from then on and the listener
closes, so no later upload lands), and start again on the same port. Bucket contents live in moto's
in-process backend, so they survive a restart (and every server of one test process shares them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

# moto accepts any key pair; these are deliberately fake.
FAKE_KEY_ID = "AKIAFAKEFAKEFAKEFAKE"
FAKE_SECRET = "fake/secret+for+the+loopback+moto+server"
REGION = "us-east-1"


class _QuietHandler(MotoRequestHandler):
    def log_request(self, *args: Any) -> None:  # one line per request would drown a failing test's output
        pass


class S3Server:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.uploads = 0  # object PUTs answered since start
        self._fail_after: int | None = None
        self._down = threading.Event()
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._moto = DomainDispatcherApplication(create_backend_app)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self._down.clear()
        self.uploads = 0
        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True,
                                   request_handler=_QuietHandler)
        self.port = self._server.server_port
        # a short poll interval makes stop() take effect within 50 ms
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._down.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def fail_after_uploads(self, n: int) -> None:
        """Go down once `n` objects have been uploaded (uploads already in flight still complete)."""
        self._fail_after = n

    def wait_down(self, timeout: float) -> bool:
        return self._down.wait(timeout)

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def _app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if self._down.is_set():
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"server is going down"]
        body = self._moto(environ, start_response)
        # path-style addressing: /<bucket>/<key> is an object upload, /<bucket> a bucket creation
        if environ["REQUEST_METHOD"] == "PUT" and "/" in environ["PATH_INFO"].strip("/"):
            with self._lock:
                self.uploads += 1
                if self._fail_after is not None and self.uploads >= self._fail_after and not self._down.is_set():
                    self._fail_after = None
                    self._down.set()
                    # shutdown() waits for the serve loop, so it must not run on this request's thread
                    threading.Thread(target=self.stop, daemon=True).start()
        return body


def isolation(home: Path) -> dict[str, str]:
    """Variables that keep this machine's AWS and DVC configuration (and real credentials) out of a test."""
    home.mkdir(parents=True, exist_ok=True)
    return {"AWS_CONFIG_FILE": str(home / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
            "DVC_GLOBAL_CONFIG_DIR": str(home / "dvc-global"), "DVC_SYSTEM_CONFIG_DIR": str(home / "dvc-system"),
            "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}


CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def team_env(home: Path) -> dict[str, str]:
    """Environment for dvc/git subprocesses: this venv first on PATH, isolated config, the fake credentials."""
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env.update(isolation(home), AWS_ACCESS_KEY_ID=FAKE_KEY_ID, AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str], ok: bool = True) -> str:
    """stdout + stderr of a command; with ok=True a non-zero exit fails the test with its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if ok:
        assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-6000:]}"
    else:
        assert proc.returncode != 0, f"{' '.join(cmd)} was expected to fail:\n{out[-6000:]}"
    return out


def add_remote(repo: Path, env: dict[str, str], name: str, url: str, endpoint: str, *, default: bool = True,
               local: bool = False) -> None:
    """`dvc remote add` an S3 remote at a custom endpoint (as for MinIO or Ceph)."""
    scope = ["--local"] if local else []
    run(["dvc", "remote", "add", *scope, *(["-d"] if default else []), name, url], repo, env)
    run(["dvc", "remote", "modify", *scope, name, "endpointurl", endpoint], repo, env)
    run(["dvc", "remote", "modify", *scope, name, "region", REGION], repo, env)
