"""A fake of OpenAI's Files and Batches endpoints, for tests (not used by the workflows).

:class:`FakeBatchAPI` is one handler, ``handle(request) -> response``, of httpx or httpx2:
mount it on a ``MockTransport`` (``http.MockTransport(api.handler(http))``) under the
real ``openai`` client, or call :meth:`FakeBatchAPI.respond` from a loopback server with
(method, path, content type, body) and send back its (status, headers, body).

It serves ``POST /files`` (multipart upload), ``GET /files/{id}``, ``GET /files/{id}/content``,
``POST /batches`` and ``GET /batches/{id}``. A batch moves one status per retrieve:
validating -> in_progress -> completed (or expired, with ``expire=True``: only the first
half of its requests answered, the rest in the error file as ``batch_expired``). On
completion each request line is answered by ``reply(custom_id, body) -> (status, body)``,
a step->reply fake; non-200 answers go to the error file.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

Reply = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]]
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
    """Files and Batches, in memory; ``expire=True`` makes every batch expire half done."""

    def __init__(self, reply: Reply, *, expire: bool = False):
        self.reply = reply
        self.expire = expire
        self.files: dict[str, FakeFile] = {}
        self.batches: dict[str, FakeBatch] = {}
        self.answered: list[str] = []  # custom ids answered, across batches
        self._ids = itertools.count(1)

    # -- the endpoints --

    def _upload(self, content_type: str, body: bytes) -> tuple[int, dict]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        filename, content = fields["file"]
        purpose = fields["purpose"][1].decode()
        file = FakeFile(f"file-{next(self._ids)}", filename or "upload.jsonl", purpose, content)
        self.files[file.id] = file
        return 200, file.to_dict()

    def _create(self, body: dict) -> tuple[int, dict]:
        if body.get("input_file_id") not in self.files:
            return 400, _error(f"no file {body.get('input_file_id')!r}")
        batch = FakeBatch(
            f"batch_{next(self._ids)}",
            body["input_file_id"],
            body["endpoint"],
            body["completion_window"],
            body.get("metadata"),
        )
        self.batches[batch.id] = batch
        return 200, batch.to_dict()

    def _retrieve(self, batch: FakeBatch) -> tuple[int, dict]:
        if batch.status in FLOW:
            batch.status = FLOW[batch.status]
            if batch.status == "completed":
                self._run(batch)
        return 200, batch.to_dict()

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
            status, body = self.reply(custom_id, line["body"])
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

    def respond(
        self, method: str, path: str, content_type: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for one request to the Files or Batches endpoints."""
        parts = [p for p in path.split("?")[0].split("/") if p and p != "v1"]
        status, data = 404, _error(f"the fake has no {method} {path}")
        if parts == ["files"] and method == "POST":
            status, data = self._upload(content_type, body)
        elif parts[:1] == ["files"] and len(parts) >= 2 and parts[1] in self.files:
            file = self.files[parts[1]]
            if parts[2:] == ["content"]:
                return 200, {"content-type": "application/octet-stream"}, file.content
            status, data = 200, file.to_dict()
        elif parts == ["batches"] and method == "POST":
            status, data = self._create(json.loads(body))
        elif parts[:1] == ["batches"] and len(parts) == 2 and parts[1] in self.batches:
            status, data = self._retrieve(self.batches[parts[1]])
        return status, {"content-type": "application/json"}, json.dumps(data).encode()

    def handler(self, http: ModuleType) -> Callable:
        """A MockTransport handler of ``http`` (httpx or httpx2)."""

        def handle(request):
            status, headers, content = self.respond(
                request.method,
                request.url.path,
                request.headers.get("content-type", ""),
                request.read(),
            )
            return http.Response(status, headers=headers, content=content)

        return handle


def _error(message: str) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }
