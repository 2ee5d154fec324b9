"""OpenAI's Files and Batches endpoints on the one fake model (:mod:`llm_workflows.testing.model`).

:class:`FakeBatchAPI` adds routes to a :class:`~llm_workflows.testing.FakeModel`
(``FakeBatchAPI(fake)``): ``POST /files`` (multipart upload), ``GET /files/{id}``,
``GET /files/{id}/content``, ``POST /batches`` and ``GET /batches/{id}``, in-process or
behind :class:`~llm_workflows.testing.server.FakeServer`. A batch moves one status per
retrieve: validating -> in_progress -> completed (or expired, with ``expire=True``: only
the first half of its requests answered, the rest in the error file as
``batch_expired``). On completion each request line is answered by the fake model
itself, with the step taken from its ``custom_id`` (``"<step>:<id>"``), so its step
replies and faults apply; non-200 answers go to the error file.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from ..runtime.wire import STEP_HEADER
from .model import Answer, FakeModel, Request, error

FLOW = {"validating": "in_progress", "in_progress": "completed"}


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
        }


class FakeBatchAPI:
    """Files and Batches, in memory, served by ``model``; ``expire=True``: every batch
    expires half done."""

    def __init__(self, model: FakeModel, *, expire: bool = False):
        self.model = model
        self.expire = expire
        self.files: dict[str, FakeFile] = {}
        self.batches: dict[str, FakeBatch] = {}
        self.answered: list[str] = []  # custom ids answered, across batches
        self._ids = itertools.count(1)
        model.route("POST", r".*/files", self._upload)
        model.route("GET", r".*/files/[^/]+", self._file)
        model.route("GET", r".*/files/[^/]+/content", self._content)
        model.route("POST", r".*/batches", self._create)
        model.route("GET", r".*/batches/[^/]+", self._retrieve)

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

    def _retrieve(self, request: Request) -> Answer:
        batch = self._found(self.batches, request)
        if batch is None:
            return error(404, "no such batch")
        if batch.status in FLOW:
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
        """Answer every request line; expired batches answer only the first half."""
        lines = [json.loads(line) for line in self.files[batch.input_file_id].content.splitlines()]
        cutoff = len(lines) // 2 if self.expire else len(lines)
        output, errors = [], []
        for number, line in enumerate(lines):
            custom_id = line["custom_id"]
            if number >= cutoff:
                expired = {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion window expired.",
                }
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
        if self.expire:
            batch.status = "expired"
        for kind, items in (("output", output), ("error", errors)):
            if items:
                content = "".join(json.dumps(i) + "\n" for i in items).encode()
                file = FakeFile(
                    f"file-{next(self._ids)}", f"{batch.id}_{kind}.jsonl", "batch_output", content
                )
                self.files[file.id] = file
                setattr(batch, f"{kind}_file_id", file.id)
