"""Time `dvc push` and `dvc pull` of the workspace's pipeline outputs against a loopback S3 server.

`bmw bench remote` (in a project where `dvc repro` has run) starts moto's S3 server on
127.0.0.1 (the dev extra installs moto), pushes everything the workspace's dvc.lock records to an empty
bucket through DVC's Python API, then fetches it all into an empty cache: the download half of `dvc pull`
(checkout is local linking). Neither the project's config nor its cache is changed: the remote and the
second cache are config overrides. Figures are a lower bound for a real S3: client and server share this
machine, and both run in this one Python process.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass

from dvc.repo import Repo

log = logging.getLogger(__name__)

BUCKET = "bench"
REGION = "us-east-1"
# moto accepts any key pair; these never leave the loopback server
KEY_ID, SECRET = "AKIABENCHBENCHBENCH0", "bench-secret"


@dataclass(frozen=True)
class Transfer:
    what: str
    files: int
    bytes: int
    seconds: float

    def line(self) -> str:
        mb = self.bytes / 1e6
        return (f"{self.what:<5} {self.files:5d} files {mb:9.2f} MB in {self.seconds:7.2f} s: "
                f"{mb / self.seconds:8.2f} MB/s, {self.files / self.seconds:8.1f} files/s")


def _remote(endpoint: str) -> dict:
    return {"remote": {"bench": {"url": f"s3://{BUCKET}/cache", "endpointurl": endpoint, "region": REGION,
                                 "access_key_id": KEY_ID, "secret_access_key": SECRET}}}


def _bucket_bytes(client) -> int:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return sum(obj["Size"] for page in pages for obj in page.get("Contents", []))


def bench(root: str, endpoint: str, jobs: int | None = None) -> list[Transfer]:
    """Push the workspace's outputs to the empty bucket at `endpoint`, then fetch them into an empty cache."""
    import boto3  # comes with moto, in the dev extra like the server itself

    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=KEY_ID,
                          aws_secret_access_key=SECRET)
    client.create_bucket(Bucket=BUCKET)
    with Repo(root, config=_remote(endpoint)) as repo:
        start = time.perf_counter()
        pushed = repo.push(remote="bench", jobs=jobs)
        push = Transfer("push", pushed, _bucket_bytes(client), time.perf_counter() - start)
    with tempfile.TemporaryDirectory(prefix="bmw-bench-cache-") as cache:
        with Repo(root, config=_remote(endpoint) | {"cache": {"dir": cache}}) as repo:
            start = time.perf_counter()
            fetched = repo.fetch(remote="bench", jobs=jobs)
            pull = Transfer("pull", fetched, push.bytes, time.perf_counter() - start)
    return [push, pull]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bmw bench remote", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=".", help="the project folder (default: here)")
    parser.add_argument("-j", "--jobs", type=int, help="parallel transfers (DVC's default: 4 x CPU cores)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise SystemExit("the benchmark needs moto's server: pip install 'moto[server]' (the dev extra)") from exc
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        log.info("loopback S3 at http://%s:%d", host, port)
        for transfer in bench(args.repo, f"http://{host}:{port}", args.jobs):
            print(transfer.line())
    finally:
        server.stop()


if __name__ == "__main__":
    main()
