"""Item pipelines: PDF attachments through Scrapy's FilesPipeline, then the journal line per article."""

from __future__ import annotations

import logging
from io import BytesIO
from pathlib import Path
from typing import Any

from scrapy.http import Request, Response
from scrapy.http.request import NO_CALLBACK
from scrapy.pipelines.files import FilesPipeline, FSFilesStore, StatInfo
from scrapy.pipelines.media import FileException, FileInfoOrError, MediaPipeline
from scrapy.utils.asyncio import run_in_thread
from scrapy.utils.defer import deferred_from_coro, ensure_awaitable
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from bmw.io import sha256_bytes, write_bytes
from bmw.scrape.failures import exception_reason, failure_record, http_reason

log = logging.getLogger(__name__)

ARTICLE_FIELDS = ("id", "path", "title", "date", "language", "body", "attachments")


class AttachmentError(FileException):
    """An attachment that is not stored; the message is the reason written to failures.jsonl."""


class _DropRecordedFailures(logging.Filter):
    """MediaPipeline logs every failed download with a traceback at ERROR; ours are expected and recorded."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], AttachmentError))


class AtomicFilesStore(FSFilesStore):
    """FSFilesStore writes in place: a crawl killed mid-write would leave a truncated PDF that stat_file then
    reports as up to date. Here a file appears only complete (temp file + os.replace); its checksum is sha256."""

    def persist_file(self, path: str, buf: BytesIO, info: Any, meta: Any = None,
                     headers: Any = None) -> Deferred[None]:
        # in a thread: the fsync would otherwise stall every download in flight
        return deferred_from_coro(run_in_thread(write_bytes, Path(self.basedir, path), buf.getvalue()))

    def stat_file(self, path: str, info: Any) -> StatInfo:
        file = Path(self.basedir, path)
        try:
            return {"last_modified": file.stat().st_mtime, "checksum": sha256_bytes(file.read_bytes())}
        except OSError:
            return {}


class PdfFilesPipeline(FilesPipeline):
    """Stores each attachment as `pdfs/<id>_<n>.pdf` (never a URL hash: the mirror's port changes), keeping
    only bodies that start with `%PDF` and fit `max_pdf_mb` (enforced by the download handler's maxsize)."""

    STORE_SCHEMES = {**FilesPipeline.STORE_SCHEMES, "": AtomicFilesStore, "file": AtomicFilesStore}

    @classmethod
    def from_crawler(cls, crawler: Any) -> PdfFilesPipeline:
        pipe = super().from_crawler(crawler)
        pipe.max_bytes = crawler.settings.getint("PDF_MAX_BYTES")
        logging.getLogger("scrapy.pipelines.media").addFilter(_DropRecordedFailures())
        return pipe

    def get_media_requests(self, item: dict, info: MediaPipeline.SpiderInfo) -> list[Request]:
        return [Request(a["url"], callback=NO_CALLBACK, meta={"file": a["file"], "download_maxsize": self.max_bytes})
                for a in item["attachment_links"]]

    def file_path(self, request: Request, response: Response | None = None, info: Any = None, *,
                  item: Any = None) -> str:
        return request.meta["file"]

    async def media_downloaded(self, response: Response, request: Request, info: MediaPipeline.SpiderInfo, *,
                               item: Any = None) -> Any:
        if response.status != 200:
            raise AttachmentError(http_reason(response))
        if not response.body.startswith(b"%PDF"):
            raise AttachmentError("not a pdf")
        return await super().media_downloaded(response, request, info, item=item)

    async def file_downloaded(self, response: Response, request: Request, info: MediaPipeline.SpiderInfo, *,
                              item: Any = None) -> str:
        await ensure_awaitable(self.store.persist_file(self.file_path(request, response, info),
                                                       BytesIO(response.body), info))
        return sha256_bytes(response.body)

    def media_failed(self, failure: Failure, request: Request, info: MediaPipeline.SpiderInfo) -> Any:
        if isinstance(failure.value, AttachmentError):
            raise failure.value
        raise AttachmentError(exception_reason(failure.value, request)) from failure.value

    def item_completed(self, results: list[FileInfoOrError], item: dict, info: MediaPipeline.SpiderInfo) -> dict:
        base = Path(self.store.basedir)
        item["attachments"] = []
        for link, (ok, value) in zip(item.pop("attachment_links"), results):
            if not ok:
                if not isinstance(value.value, AttachmentError):
                    value.raiseException()  # a bug, not a download failure: fail the item loudly
                reason = str(value.value)
                log.warning("%s: attachment %s not stored: %s", item["id"], link["path"], reason)
                item["failures"].append(failure_record(link["path"], "attachment", reason, item["id"]))
                continue
            if value["path"] != link["file"]:
                # The same URL on an earlier article's page: Scrapy served its cached result; keep our own name.
                write_bytes(base / link["file"], (base / value["path"]).read_bytes())
            item["attachments"].append({"path": link["path"], "file": link["file"], "sha256": value["checksum"],
                                        "bytes": (base / link["file"]).stat().st_size})
        return item


class JournalPipeline:
    """Runs after the files pipeline, so a journaled article's PDFs are already on disk. The fsync runs in a
    thread, so that it does not stall the downloads in flight."""

    def __init__(self, crawler: Any):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Any) -> JournalPipeline:
        return cls(crawler)

    async def process_item(self, item: dict) -> dict:
        article = {k: item[k] for k in ARTICLE_FIELDS}
        await run_in_thread(self.crawler.spider.finish_entry, item["id"], article, item["failures"])
        return item
