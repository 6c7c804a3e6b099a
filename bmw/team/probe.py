"""Probe the default remote: list it through DVC's own filesystem for it, within a time limit.

The filesystem comes from `dvc.fs.get_cloud_fs`, so `endpointurl`, region, profile and credentials are
read exactly as `dvc push` reads them (config.local and AWS_* variables included).
"""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    NoCredentialsError,
    PartialCredentialsError,
)
from dvc.fs import get_cloud_fs
from dvc.repo import Repo

from bmw.team.findings import Finding

CREDENTIALS_FIX = ("dvc remote modify --local {name} access_key_id <id> && dvc remote modify --local {name} "
                   "secret_access_key <secret>, or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)")


def _open(repo: Repo, name: str, timeout: float) -> tuple[Any, str, str]:
    """DVC's filesystem for the remote, its path, and where it lives (for messages)."""
    cls, conf, path = get_cloud_fs(repo.config, name=name)
    if cls.protocol == "s3":
        conf.setdefault("connect_timeout", timeout / 2)
        conf.setdefault("read_timeout", timeout / 2)
    fs = cls(**conf)
    if cls.protocol == "s3":
        # one attempt: botocore would otherwise retry a refused connection for ~15 s
        fs.fs_args.setdefault("config_kwargs", {})["retries"] = {"max_attempts": 1}
    where = conf.get("endpointurl") or ("AWS S3" if cls.protocol == "s3" else cls.protocol)
    return fs, path, where


def _list(fs: Any, path: str) -> str:
    """What was verified; raises what the filesystem raises."""
    try:
        return f"lists {len(fs.ls(path, detail=False))} top-level entries"
    except FileNotFoundError:
        pass
    root = fs.parts(path)[0]  # the bucket; an empty remote folder is fine as long as it exists
    try:
        fs.ls(root, detail=False)
    except FileNotFoundError as exc:
        raise _MissingRoot(root) from exc
    return "empty so far (the first push creates it)"


class _MissingRoot(Exception):
    pass


def _classify(exc: BaseException, name: str, url: str, where: str) -> Finding:
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return Finding("remote.reachable", "blocker", f"no credentials found for remote '{name}' ({url})",
                       CREDENTIALS_FIX.format(name=name))
    if isinstance(exc, PermissionError):
        return Finding("remote.reachable", "blocker",
                       f"remote '{name}' ({url} at {where}) refused the credentials or access: {exc}",
                       "check the key pair and the bucket policy; " + CREDENTIALS_FIX.format(name=name))
    if isinstance(exc, _MissingRoot):
        return Finding("remote.reachable", "blocker", f"bucket '{exc}' of remote '{name}' does not exist at {where}",
                       f"create it (aws s3 mb s3://{exc} --endpoint-url <endpoint>) or fix the url: "
                       f"dvc remote modify {name} url s3://<bucket>/<path>")
    if isinstance(exc, (BotoCoreError, OSError)):
        return Finding("remote.reachable", "blocker", f"cannot reach remote '{name}' at {where}: {exc}",
                       f"check the endpoint (dvc remote modify {name} endpointurl https://host:port), network or VPN")
    return Finding("remote.reachable", "blocker", f"probing remote '{name}' failed: {type(exc).__name__}: {exc}",
                   "run `dvc push -v` to see the full error; check `dvc remote list` and `dvc config -l`")


def check_reachable(repo: Repo, name: str, timeout: float) -> Finding:
    url = repo.config["remote"][name]["url"]
    result: dict[str, Any] = {}

    def probe() -> None:
        try:
            fs, path, result["where"] = _open(repo, name, timeout)
            result["ok"] = _list(fs, path)
        except Exception as exc:  # any failure is a finding, never a crash of the doctor
            result["error"] = exc

    # a daemon thread: a remote that never answers must not keep the doctor from exiting
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    where = result.get("where", url)
    if "ok" in result:
        return Finding("remote.reachable", "ok", f"remote '{name}' ({url} at {where}): {result['ok']}")
    if "error" in result:
        return _classify(result["error"], name, url, where)
    return Finding("remote.reachable", "blocker", f"remote '{name}' at {where} did not answer within {timeout:g} s",
                   f"check the endpoint (dvc remote modify {name} endpointurl https://host:port), network or VPN")
