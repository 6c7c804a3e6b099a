"""Page texts of a PDF with pypdf, or the reason the file has none.

Extraction never raises: a broken, encrypted or image-only file yields a reason for the rejects file, and so
does one that would cost more than its Budget (pages, seconds, bytes a stream inflates to).
Pages are joined with a form feed (PAGE_BREAK); an empty line inside a page marks a paragraph gap.
"""

from __future__ import annotations

import io
import math
import signal
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Literal

from pypdf import PasswordType, PdfReader, apply_configuration
from pypdf.errors import DependencyError, LimitReachedError

PAGE_BREAK = "\f"
# A baseline step this much larger than the page's usual line pitch is a paragraph gap, not a line wrap.
GAP_FACTOR = 1.35
# Leading beyond this many font sizes is itself a gap: caps the pitch of a page of one-line paragraphs.
MAX_LEADING = 1.7
HEADER_WINDOW = 1024  # bytes in which a PDF must declare itself (%PDF-), as readers accept


@dataclass(frozen=True)
class Budget:
    """What one PDF may cost: a press release has tens of pages of a few kB each; a file that wants more is
    hostile or broken, and is rejected with the reason instead of stalling the stage."""

    pages: int = 300
    seconds: float = 60.0
    stream_bytes: int = 16 * 1024 * 1024  # one inflated stream (a page's contents, a font); pypdf allows 75 MB


BUDGET = Budget()


class _OverTime(BaseException):
    """Raised by the timer; a BaseException, so that pypdf's lenient `except Exception` cannot swallow it."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[float]:
    """Yields the deadline (time.monotonic()); in the main thread a timer also interrupts a page that hangs."""
    deadline = time.monotonic() + seconds
    if threading.current_thread() is not threading.main_thread():
        yield deadline  # signals only reach the main thread: the caller checks the deadline between pages
        return

    def expire(signum: int, frame: object) -> None:
        raise _OverTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield deadline
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Extraction:
    pages: tuple[str, ...] = ()
    reason: str | None = None  # why the file gave no usable text; None when it did

    @property
    def text(self) -> str:
        return PAGE_BREAK.join(self.pages)


def extract_pdf(data: bytes, mode: Literal["plain", "layout"] = "plain", budget: Budget = BUDGET) -> Extraction:
    """The text of every page (pypdf `extraction_mode`), or an Extraction with a reason and no pages."""
    if b"%PDF-" not in data[:HEADER_WINDOW]:
        return Extraction(reason="not a pdf: no %PDF header")
    limits = {name: budget.stream_bytes for name in (
        "zlib_maximum_output_length", "lzw_maximum_output_length", "run_length_maximum_output_length",
        "array_based_stream_maximum_output_length", "brotli_maximum_output_length")}
    try:
        with apply_configuration(**limits), _time_limit(budget.seconds) as deadline:
            reader = PdfReader(io.BytesIO(data))
            # Many press PDFs are encrypted with an empty user password (owner-only restrictions): readable.
            if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                return Extraction(reason="encrypted pdf: a password is needed")
            if len(reader.pages) > budget.pages:
                return Extraction(reason=f"over budget: {len(reader.pages)} pages > {budget.pages}")
            pages = []
            for page in reader.pages:
                if time.monotonic() > deadline:
                    raise _OverTime
                pages.append(_page_text(page, mode))
    except _OverTime:
        return Extraction(reason=f"over budget: extraction took over {budget.seconds:g} s")
    except LimitReachedError:
        return Extraction(reason=f"over budget: a stream inflates past {budget.stream_bytes / 2**20:g} MiB")
    except DependencyError as e:  # AES decryption without the cryptography package
        return Extraction(reason=f"encrypted pdf: {e}")
    except Exception as e:  # pypdf raises many types on broken files; any of them means "unreadable"
        message = " ".join(str(e).split())[:160]
        return Extraction(reason=f"corrupt pdf: {type(e).__name__}: {message}")
    if not pages:
        return Extraction(reason="corrupt pdf: no pages")
    if not any(p.strip() for p in pages):
        return Extraction(reason=f"no text layer: {len(pages)} image-only page(s)")
    return Extraction(pages=tuple(pages))


@dataclass(frozen=True)
class Line:
    y: float  # baseline on the page, upwards
    size: float  # font size as drawn (text matrix and CTM applied)


def _page_text(page, mode: str) -> str:
    if mode == "layout":
        return page.extract_text(extraction_mode="layout")  # marks vertical gaps with empty lines itself
    fragments: list[tuple[str, Line | None]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        if text:
            fragments.append((text, _placement(cm, tm, size) if text.strip() else None))

    text = page.extract_text(extraction_mode="plain", visitor_text=visit)
    if "".join(t for t, _ in fragments) != text:
        return text  # the visitor did not see the output as written: keep it, without gap marks
    return _mark_gaps(_placed_lines(fragments))


def _placement(cm: list[float], tm: list[float], size: float) -> Line:
    # the text matrix composed with the CTM: row 3 gives the baseline, the column scale the drawn size
    m2, m3 = tm[2] * cm[0] + tm[3] * cm[2], tm[2] * cm[1] + tm[3] * cm[3]
    return Line(y=tm[4] * cm[1] + tm[5] * cm[3] + cm[5], size=round(size * math.hypot(m2, m3), 1))


def _placed_lines(fragments: list[tuple[str, Line | None]]) -> list[tuple[str, Line | None]]:
    """Output lines, each placed like the fragment that starts it (None when unknown)."""
    lines: list[list] = [["", None]]
    for text, place in fragments:
        for i, piece in enumerate(text.split("\n")):
            if i:
                lines.append(["", None])
            if i == 0 and lines[-1][1] is None and piece.strip():
                lines[-1][1] = place
            lines[-1][0] += piece
    return [(t, p) for t, p in lines]


def _mark_gaps(lines: list[tuple[str, Line | None]]) -> str:
    """Join lines, with an empty line where a paragraph ends: a font size change, a jump up the page, or a
    baseline step clearly larger than the usual pitch of that font size on the page."""
    steps: dict[float, list[float]] = {}
    placed = [p for _, p in lines if p is not None]
    for a, b in zip(placed, placed[1:]):
        if a.size == b.size and a.y > b.y:
            steps.setdefault(a.size, []).append(a.y - b.y)
    pitch = {size: min(statistics.median_low(s), MAX_LEADING * size) for size, s in steps.items()}
    out: list[str] = []
    prev: Line | None = None
    for text, place in lines:
        if prev is not None and place is not None and out and out[-1].strip():
            step = prev.y - place.y
            if place.size != prev.size or step < 0 or step > GAP_FACTOR * pitch.get(place.size, step):
                out.append("")
        out.append(text)
        if place is not None:
            prev = place
    return "\n".join(out)
