"""PDF attachments of the mirror, rendered with fpdf2 (core Helvetica, latin-1 text).

Bytes are deterministic: a fixed creation date (the release day) and fpdf2's file id, which is a hash of
the document, so building twice gives identical files.
"""

from __future__ import annotations

import datetime as dt
import io
import random

from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from mirror.content import Release, format_date
from mirror.layout import PAGE_H, PAGE_W, PT_MM, STYLES, Line, paginate

HEADER_X, HEADER_Y, HEADER_LEADING = 20.0, 16.0, 4.2
IMAGE_PX_PER_MM = 4  # about 100 dpi: legible, yet small files


def header_lines(release: Release, page: int) -> list[str]:
    """The running header every page carries."""
    a = release.article
    return ["BMW Group", "Corporate Communications", "Media Information", f"Date {format_date(a.date)}",
            f"Subject {a.title}", f"Page {page}"]


def _new_pdf(release: Release) -> FPDF:
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_creation_date(dt.datetime.combine(release.article.date, dt.time(12), tzinfo=dt.timezone.utc))
    pdf.set_title(release.article.title)
    pdf.set_author("BMW Group Corporate Communications")
    pdf.set_creator("bmw-press-llm mirror")
    pdf.set_producer("bmw-press-llm mirror")
    return pdf


def _font(pdf: FPDF, style: str) -> None:
    st = STYLES[style]
    pdf.set_font("helvetica", "B" if st.font.endswith("B") else "", st.size)


def _draw_page(pdf: FPDF, release: Release, number: int, lines: list[Line]) -> None:
    pdf.add_page()
    pdf.set_font("helvetica", "", 8)
    for i, text in enumerate(header_lines(release, number)):
        if pdf.get_string_width(text) > PAGE_W - 2 * HEADER_X:  # a wrapped header line would leak into the body
            raise ValueError(f"{release.article.id}: header line too long for one line: {text!r}")
        pdf.text(HEADER_X, HEADER_Y + i * HEADER_LEADING, text)
    for line in lines:
        _font(pdf, line.style)
        pdf.text(line.x, line.y, line.text)
    pdf.set_font("helvetica", "", 9)
    label = str(number)
    pdf.text((PAGE_W - pdf.get_string_width(label)) / 2, PAGE_H - 12, label)


def render_pdf(release: Release) -> bytes:
    """The release as a text PDF: running header, body column with boilerplate, page-number footer."""
    pdf = _new_pdf(release)
    for number, lines in enumerate(paginate(list(release.pdf_blocks)), start=1):
        _draw_page(pdf, release, number, lines)
    return bytes(pdf.output())


def _page_image(release: Release, number: int, lines: list[Line]) -> Image.Image:
    """One page drawn as pixels (a scan): the same text, no text layer."""
    s = IMAGE_PX_PER_MM
    img = Image.new("L", (int(PAGE_W * s), int(PAGE_H * s)), 255)
    draw = ImageDraw.Draw(img)
    small = ImageFont.load_default(size=8 * PT_MM * s)
    for i, text in enumerate(header_lines(release, number)):
        draw.text((HEADER_X * s, (HEADER_Y + i * HEADER_LEADING) * s), text, font=small, fill=0, anchor="ls")
    for line in lines:
        font = ImageFont.load_default(size=STYLES[line.style].size * PT_MM * s)
        draw.text((line.x * s, line.y * s), line.text, font=font, fill=0, anchor="ls")
    draw.text((PAGE_W * s / 2, (PAGE_H - 12) * s), str(number), font=small, fill=0, anchor="ms")
    return img


def render_image_only_pdf(release: Release) -> bytes:
    """The release as scanned pages: each page one embedded image, no text layer at all."""
    pdf = _new_pdf(release)
    for number, lines in enumerate(paginate(list(release.pdf_blocks)), start=1):
        pdf.add_page()
        buf = io.BytesIO()
        _page_image(release, number, lines).convert("1").save(buf, format="PNG", optimize=True)
        pdf.image(buf, x=0, y=0, w=PAGE_W, h=PAGE_H)
    return bytes(pdf.output())


def corrupt_pdf(release: Release, seed: int) -> bytes:
    """Starts like the real PDF, then breaks off into garbage: no xref, no trailer, no readable page."""
    good = render_pdf(release)
    rng = random.Random(f"corrupt:{seed}:{release.article.id}")
    return good[:400] + bytes(rng.randrange(256) for _ in range(3000))
