"""Write the mirror site: HTML pages, PDFs, robots.txt and routes.json (URL path -> file, type, status).

`bmw mirror build [--out DIR] [--seed N] [--releases N]`; the default output is the committed `mirror/site` (116
releases). `--releases 1000 --out DIR` writes a scaled site of the same kind (same length spread, PDFs, bad cases)
for runs at the real job's data volume; the scrape stage crawls it with `scrape.source: mirror:DIR`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bmw.io import write_bytes, write_json
from mirror import SITE_DIR, html, pdf
from mirror.content import ARTICLE_COUNT, PER_PAGE, MirrorArticle, Release, mirror_releases

log = logging.getLogger(__name__)
HTML, PDF, TEXT = "text/html; charset=utf-8", "application/pdf", "text/plain; charset=utf-8"
ROBOTS = "User-agent: *\nDisallow: /global/internal/\n"


def listing_entries(releases: tuple[Release, ...]) -> list[tuple[MirrorArticle, str]]:
    """Newsfeed entries, newest first; an article with a second URL is listed again atop the next page."""
    entries: list[tuple[MirrorArticle, str]] = []
    repeats: dict[int, tuple[MirrorArticle, str]] = {}
    for i, r in enumerate(releases):
        entries.append((r.article, r.article.path))
        if r.alias_path:
            repeats[(i // PER_PAGE + 1) * PER_PAGE] = (r.article, r.alias_path)
    for at in sorted(repeats, reverse=True):
        entries.insert(at, repeats[at])
    return entries


def site_files(seed: int = 0, count: int = ARTICLE_COUNT) -> tuple[dict[str, bytes], dict[str, dict]]:
    """Every file of the site (relative path -> bytes) and the routes that serve them."""
    releases = mirror_releases(seed, count)
    files: dict[str, bytes] = {"robots.txt": ROBOTS.encode()}
    routes: dict[str, dict] = {"/robots.txt": {"file": "robots.txt", "type": TEXT, "status": 200}}

    def add(path: str, file: str, body: bytes, ctype: str) -> None:
        files[file] = body
        routes[path] = {"file": file, "type": ctype, "status": 200}

    entries = listing_entries(releases)
    last = -(-len(entries) // PER_PAGE)
    for page in range(1, last + 1):
        chunk = entries[(page - 1) * PER_PAGE : page * PER_PAGE]
        add(html.listing_path(page), f"overview/page-{page}.html",
            html.listing_page(chunk, page, last).encode(), HTML)
    routes["/"] = routes[html.listing_path(1)]
    for r in releases:
        a = r.article
        page_file = f"detail/{a.id}.html"
        add(a.path, page_file, html.article_page(r).encode(), HTML)
        if r.alias_path:
            routes[r.alias_path] = routes[a.path]
        attachment = f"attachment/{a.id}_1"
        match a.attachment:
            case "pdf":
                add(a.attachment_path, f"{attachment}.pdf", pdf.render_pdf(r), PDF)
            case "image_only":
                add(a.attachment_path, f"{attachment}.pdf", pdf.render_image_only_pdf(r), PDF)
            case "corrupt":
                add(a.attachment_path, f"{attachment}.pdf", pdf.corrupt_pdf(r, seed), PDF)
            case "not_pdf":
                add(a.attachment_path, f"{attachment}.html", html.not_pdf_page().encode(), HTML)
        for href, _ in r.links:
            if href.startswith("/global/internal/"):
                add(href, f"internal/{a.id}.html", html.internal_page(r).encode(), HTML)
    return files, dict(sorted(routes.items()))


def build_site(out: Path = SITE_DIR, seed: int = 0, count: int = ARTICLE_COUNT) -> dict[str, dict]:
    """Write the site into `out` (stale files of an earlier build are removed) and return its routes."""
    if count != ARTICLE_COUNT and Path(out).resolve() == SITE_DIR:
        raise ValueError(f"the bundled site has {ARTICLE_COUNT} releases (dvc.lock is made from it): "
                         f"write {count} elsewhere with --out")
    files, routes = site_files(seed, count)
    for rel, body in sorted(files.items()):
        target = out / rel
        if not target.exists() or target.read_bytes() != body:
            write_bytes(target, body)
    write_json(out / "routes.json", routes)
    keep = set(files) | {"routes.json"}
    for old in sorted(p for p in out.rglob("*") if p.is_file()):
        if old.relative_to(out).as_posix() not in keep:
            old.unlink()
    log.info("wrote %d files, %d routes to %s", len(files) + 1, len(routes), out)
    return routes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bmw mirror build", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=SITE_DIR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--releases", type=int, default=ARTICLE_COUNT,
                    help=f"number of releases (default {ARTICLE_COUNT}: the bundled site; another needs --out)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        build_site(args.out, args.seed, args.releases)
    except ValueError as e:
        ap.error(str(e))


if __name__ == "__main__":
    main()
