"""How DVC will link cache objects into the workspace here, tested on the real cache and workspace folders.

DVC tries the configured `cache.type` entries in order and uses the first one that works; `copy` doubles
every output on disk (a multi-GB checkpoint twice). Without `cache.type` DVC tries reflink, then copies.
A stage's directory output is hardlinked into the cache when `dvc repro` commits it only if hardlink comes first:
with `reflink,hardlink,copy` where reflinks do not work (ext4, overlayfs), each file of it is copied into the cache
and stays a copy in the workspace until `dvc checkout --relink` (measured: link count 1).
"""

from __future__ import annotations

import os

from dvc.repo import Repo
from dvc_objects.fs import LocalFileSystem
from dvc_objects.fs.generic import test_links

from bmw.team.findings import Finding

FIX = "dvc config cache.type hardlink,copy && git add .dvc/config && git commit -m 'DVC: link the cache'"


def effective_link(repo: Repo) -> tuple[list[str], str | None]:
    """(configured types, the type DVC will use); None when no configured type works."""
    types = list(repo.cache.local.cache_types)
    fs = LocalFileSystem()
    # test_links puts its probe file beside the path given: here, in the workspace root
    links = [t for t in types if t != "copy"]
    working = set(test_links(links, fs, repo.cache.local.path, fs, os.path.join(repo.root_dir, "x")) if links else [])
    return types, next((t for t in types if t == "copy" or t in working), None)


def check_cache_link(repo: Repo) -> Finding:
    types, used = effective_link(repo)
    configured = repo.config["cache"].get("type")
    shown = ",".join(types) + ("" if configured else " (cache.type unset: DVC's default)")
    if used is None:
        return Finding("cache.link", "blocker",
                       f"none of cache.type {shown} works between {repo.cache.local.path} and the workspace: "
                       "checkout fails", FIX)
    if used == "copy":
        why = "" if types == ["copy"] else ": the link types before it do not work across these folders"
        return Finding("cache.link", "warning",
                       f"cache.type {shown} copies every output out of the cache{why}; each checkpoint takes twice "
                       "its size on disk", FIX + " (cache and workspace on one filesystem for hardlinks)")
    if used == "hardlink" and types[0] != "hardlink":
        return Finding("cache.link", "warning",
                       f"cache.type {shown}: checkouts hardlink, but `dvc repro` copies every file of a directory "
                       f"output into the cache (DVC links on commit only when hardlink comes first): each model is "
                       "stored twice until `dvc checkout --relink`", FIX)
    return Finding("cache.link", "ok", f"cache.type {shown}: checkouts {used} (tested)")
