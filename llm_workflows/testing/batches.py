"""OpenAI's Files and Batches endpoints on the one fake model (:mod:`llm_workflows.testing.model`).

:class:`FakeBatchAPI` adds routes to a :class:`~llm_workflows.testing.FakeModel`
(``FakeBatchAPI(fake)``): ``POST /files`` (multipart upload), ``GET /files`` (the list,
newest first, on one page), ``GET /files/{id}``, ``GET /files/{id}/content``, ``POST
/batches``, ``GET /batches/{id}`` and ``POST /batches/{id}/cancel``, in-process or behind
:class:`~llm_workflows.testing.server.FakeServer`, and ``GET /batches`` (the list, newest
first, on one page). A batch moves one status per retrieve: validating -> in_progress ->
completed; a cancelled one: cancelling -> cancelled, with no request answered. ``end`` plays the other ends: "expired" or "cancelled" (only the
first half of its requests answered, the rest in the error file as ``batch_expired`` or
``batch_cancelled``), or "failed" (validation failed: no output, ``errors`` holds
``reason``). On completion each request line is answered by the fake model itself, with
the step taken from its ``custom_id`` (``"<step>:<id>"``), so its step replies and faults
apply; non-200 answers go to the error file. ``mangle(kind, content)`` may rewrite an
output or error file's bytes (malformed files).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..runtime.wire import STEP_HEADER
from .model import Answer, FakeModel, Request, error

FLOW = {"validating": "in_progress", "in_progress": "completed"}
ENDS = ("completed", "expired", "cancelled", "failed")


@dataclass
class FakeFile:
    id: str
    filename: str
    purpose: str
    content: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": 0,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class FakeBatch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"total": 0, "completed": 0, "failed": 0}
    )
    errors: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": 0,
            "request_counts": self.counts,
            "metadata": self.metadata,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
        }


class FakeBatchAPI:
    """Files and Batches, in memory, served by ``model``; ``end`` is how every batch ends
    (``expire=True``: "expired"), ``reason`` a failed batch's error message."""

    def __init__(
        self,
        model: FakeModel,
        *,
        expire: bool = False,
        end: str = "completed",
        reason: str = "The input file is invalid.",
        mangle: Callable[[str, bytes], bytes] | None = None,
    ):
        if end not in ENDS:
            raise ValueError(f"end must be one of {', '.join(ENDS)}")
        self.model = model
        self.end = "expired" if expire else end
        self.reason = reason
        self.mangle = mangle
        self.files: dict[str, FakeFile] = {}
        self.batches: dict[str, FakeBatch] = {}
        self.answered: list[str] = []  # custom ids answered, across batches
        self._ids = itertools.count(1)
        model.route("POST", r".*/files", self._upload)
        model.route("GET", r".*/files", self._list_files)
        model.route("GET", r".*/files/[^/]+", self._file)
        model.route("GET", r".*/files/[^/]+/content", self._content)
        model.route("POST", r".*/batches", self._create)
        model.route("GET", r".*/batches", self._list)
        model.route("GET", r".*/batches/[^/]+", self._retrieve)
        model.route("POST", r".*/batches/[^/]+/cancel", self._cancel)

    @property
    def expire(self) -> bool:
        return self.end == "expired"

    # -- the endpoints --

    def _upload(self, request: Request) -> Answer:
        content_type = request.headers.get("content-type", "")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.content
        )
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        filename, content = fields["file"]
        purpose = fields["purpose"][1].decode()
        file = FakeFile(f"file-{next(self._ids)}", filename or "upload.jsonl", purpose, content)
        self.files[file.id] = file
        return Answer(200, file.to_dict())

    def _found(self, table: dict, request: Request, at: int = -1):
        """The file or batch named by the path's segment ``at``, or None."""
        return table.get(request.path.rstrip("/").split("/")[at])

    def _file(self, request: Request) -> Answer:
        file = self._found(self.files, request)
        return Answer(200, file.to_dict()) if file else error(404, "no such file")

    def _content(self, request: Request) -> Answer:
        file = self._found(self.files, request, -2)
        if file is None:
            return error(404, "no such file")
        return Answer(200, file.content, {"content-type": "application/octet-stream"})

    def _create(self, request: Request) -> Answer:
        body = request.body
        if body.get("input_file_id") not in self.files:
            return error(400, f"no file {body.get('input_file_id')!r}")
        batch = FakeBatch(
            f"batch_{next(self._ids)}",
            body["input_file_id"],
            body["endpoint"],
            body["completion_window"],
            body.get("metadata"),
        )
        self.batches[batch.id] = batch
        return Answer(200, batch.to_dict())

    def _list(self, request: Request) -> Answer:
        """GET /batches: every batch, newest first, on one page (``limit`` is not played)."""
        return _page([b.to_dict() for b in reversed(self.batches.values())])

    def _list_files(self, request: Request) -> Answer:
        """GET /files: every file, newest first, on one page (no filter is played)."""
        return _page([f.to_dict() for f in reversed(self.files.values())])

    def _cancel(self, request: Request) -> Answer:
        """POST /batches/{id}/cancel: a batch not ended yet is cancelled before it runs."""
        batch = self._found(self.batches, request, -2)
        if batch is None:
            return error(404, "no such batch")
        if batch.status in ENDS:
            return error(409, f"Cannot cancel a batch with status '{batch.status}'.")
        batch.status = "cancelling"
        return Answer(200, batch.to_dict())

    def _retrieve(self, request: Request) -> Answer:
        batch = self._found(self.batches, request)
        if batch is None:
            return error(404, "no such batch")
        if batch.status == "cancelling":
            batch.status = "cancelled"
        elif batch.status == "validating" and self.end == "failed":
            batch.status = "failed"
            batch.errors = [{"code": "invalid_request", "message": self.reason, "line": 1}]
        elif batch.status in FLOW:
            batch.status = FLOW[batch.status]
            if batch.status == "completed":
                self._run(batch)
        return Answer(200, batch.to_dict())

    def _answer(self, line: dict[str, Any]) -> Answer:
        """The fake model's answer to one request line, its step read from the custom_id."""
        step = line["custom_id"].partition(":")[0]
        request = Request(
            "POST",
            line["url"],
            {STEP_HEADER.lower(): step},
            json.dumps(line["body"]).encode(),
        )
        return self.model.chat(request)

    def _run(self, batch: FakeBatch) -> None:
        """Answer every request line; expired and cancelled batches only the first half."""
        lines = [json.loads(line) for line in self.files[batch.input_file_id].content.splitlines()]
        cutoff = len(lines) // 2 if self.end in ("expired", "cancelled") else len(lines)
        output, errors = [], []
        for number, line in enumerate(lines):
            custom_id = line["custom_id"]
            if number >= cutoff:
                expired = (
                    {
                        "code": "batch_expired",
                        "message": "This request could not be executed before the completion window expired.",
                    }
                    if self.end == "expired"
                    else {
                        "code": "batch_cancelled",
                        "message": "This request could not be executed before the batch was cancelled.",
                    }
                )
                errors.append(
                    {
                        "id": f"batch_req_{number}",
                        "custom_id": custom_id,
                        "response": None,
                        "error": expired,
                    }
                )
                continue
            answer = self._answer(line)
            status, body = answer.status, answer.body
            self.answered.append(custom_id)
            result = {
                "id": f"batch_req_{number}",
                "custom_id": custom_id,
                "response": {"status_code": status, "request_id": f"req_{number}", "body": body},
                "error": None,
            }
            (output if status == 200 else errors).append(result)
        batch.counts = {"total": len(lines), "completed": len(output), "failed": len(errors)}
        if self.end in ("expired", "cancelled"):
            batch.status = self.end
        for kind, items in (("output", output), ("error", errors)):
            if items:
                content = "".join(json.dumps(i) + "\n" for i in items).encode()
                if self.mangle is not None:
                    content = self.mangle(kind, content)
                file = FakeFile(
                    f"file-{next(self._ids)}", f"{batch.id}_{kind}.jsonl", "batch_output", content
                )
                self.files[file.id] = file
                setattr(batch, f"{kind}_file_id", file.id)


def _page(data: list[dict[str, Any]]) -> Answer:
    """One page of a list endpoint, holding everything."""
    return Answer(
        200,
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": False,
        },
    )
