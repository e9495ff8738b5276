"""OData $batch bodies for the Dataverse Web API: independent requests and change sets
(requests that succeed or fail together), and the parsing of the multipart/mixed answer."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
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


# One item of a batch: a request on its own, or a change set (a list: all or none).
BatchItem = BatchOperation | list[BatchOperation]


def _request_lines(op: BatchOperation, content_id: int) -> list[str]:
    lines = [
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        f"Content-ID: {content_id}",
        "",
        f"{op.method} {op.url} HTTP/1.1",
        "Content-Type: application/json; type=entry",
    ]
    lines += [f"{k}: {v}" for k, v in op.headers.items()]
    return [*lines, "", json.dumps(op.body) if op.body is not None else ""]


def build_batch(items: list[BatchItem]) -> tuple[str, bytes]:
    """Returns (content type, body) of a $batch of independent requests and change sets;
    requests are numbered (Content-ID) from 1 across the whole batch."""
    batch = f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    number = 0
    for item in items:
        if isinstance(item, BatchOperation):
            number += 1
            lines += [f"--{batch}", *_request_lines(item, number)]
            continue
        changeset = f"changeset_{uuid.uuid4()}"
        lines += [f"--{batch}", f"Content-Type: multipart/mixed; boundary={changeset}", ""]
        for op in item:
            number += 1
            lines += [f"--{changeset}", *_request_lines(op, number)]
        lines.append(f"--{changeset}--")
    lines += [f"--{batch}--", ""]
    return f"multipart/mixed; boundary={batch}", "\r\n".join(lines).encode()


def build_changeset(operations: list[BatchOperation]) -> tuple[str, bytes]:
    """Returns (content type, body) of a $batch holding one change set."""
    return build_batch([operations])


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


def parse_batch_items(content_type: str, body: bytes) -> list[BatchResponse | list[BatchResponse]]:
    """The answers per batch item, in order: a request's answer, or a change set's list
    of answers (one answer, the error, when the change set failed)."""
    message = BytesParser(policy=compat32).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        raise ValueError(f"a $batch answer must be multipart/mixed, got {content_type!r}")
    items: list[BatchResponse | list[BatchResponse]] = []
    for part in _parts(message):
        if part.get_content_type() == "multipart/mixed":
            items.append([_answer(inner) for inner in _parts(part)])
        else:
            items.append(_answer(part))
    return items


def _parts(message: Message) -> list[Message]:
    """The parts of a multipart message (the legacy policy: fast on a thousand parts)."""
    return [p for p in message.get_payload() if isinstance(p, Message)]


def _answer(part: Any) -> BatchResponse:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raise ValueError("a $batch part has no body")
    start, headers, data = parse_http_message(payload)
    pieces = start.split(" ", 2)
    if len(pieces) < 2 or not pieces[1].isdigit():
        raise ValueError(f"a $batch part does not start with an HTTP status: {start[:60]!r}")
    content_id = str(part.get("Content-ID", "")).strip()
    if content_id:
        headers.setdefault("content-id", content_id)
    return BatchResponse(int(pieces[1]), headers, data)


def parse_batch_response(content_type: str, body: bytes) -> list[BatchResponse]:
    """Every application/http answer in order, change sets flattened. A failed change set
    is answered by one part: the error of the request that failed."""
    flat: list[BatchResponse] = []
    for item in parse_batch_items(content_type, body):
        flat.extend(item if isinstance(item, list) else [item])
    return flat
