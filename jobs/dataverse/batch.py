"""OData $batch bodies for the Dataverse Web API: one change set of requests that
succeed or fail together, and the parsing of the multipart/mixed answer."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any


@dataclass(frozen=True)
class BatchOperation:
    method: str
    url: str  # absolute, as the Web API expects inside a batch
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


def build_changeset(operations: list[BatchOperation]) -> tuple[str, bytes]:
    """Returns (content type, body) of a $batch holding one change set."""
    batch = f"batch_{uuid.uuid4()}"
    changeset = f"changeset_{uuid.uuid4()}"
    lines = [f"--{batch}", f"Content-Type: multipart/mixed; boundary={changeset}", ""]
    for number, op in enumerate(operations, start=1):
        lines += [
            f"--{changeset}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {number}",
            "",
            f"{op.method} {op.url} HTTP/1.1",
            "Content-Type: application/json; type=entry",
        ]
        lines += [f"{k}: {v}" for k, v in op.headers.items()]
        lines += ["", json.dumps(op.body) if op.body is not None else ""]
    lines += [f"--{changeset}--", f"--{batch}--", ""]
    return f"multipart/mixed; boundary={batch}", "\r\n".join(lines).encode()


def parse_http_message(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """The start line, headers and body of one application/http part."""
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    start, *header_lines = head.decode("utf-8", "replace").split("\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return start.strip(), headers, body.strip()


def parse_batch_response(content_type: str, body: bytes) -> list[BatchResponse]:
    """Every application/http answer in order, change sets flattened. A failed change set
    is answered by one part: the error of the request that failed."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        raise ValueError(f"a $batch answer must be multipart/mixed, got {content_type!r}")
    answers: list[BatchResponse] = []
    for part in message.walk():
        if part.get_content_type() != "application/http":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            raise ValueError("a $batch part has no body")
        start, headers, data = parse_http_message(payload)
        pieces = start.split(" ", 2)
        if len(pieces) < 2 or not pieces[1].isdigit():
            raise ValueError(f"a $batch part does not start with an HTTP status: {start[:60]!r}")
        answers.append(BatchResponse(int(pieces[1]), headers, data))
    return answers
