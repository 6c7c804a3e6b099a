"""The bundled press-site mirror: generated content, the rendered site, and an HTTP server for it."""

from __future__ import annotations

from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent / "site"  # the committed site, written by `bmw mirror build`
