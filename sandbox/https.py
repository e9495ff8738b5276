"""The HTTPS server under every web-service emulator: a self-signed certificate the
clients trust through `ca_file`, werkzeug's URL routing, JSON or raw bodies, and
faults injected per path (status, headers, body; or the request is processed and
its answer lost, as when a gateway times out after the service committed)."""

from __future__ import annotations

import json
import re
import ssl
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map

from sandbox.tls import self_signed_cert

# (status, headers, payload): payload None = no body, bytes = raw, else JSON.
Response = tuple[int, dict[str, str], Any]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Any  # email.message.Message: case-insensitive get()
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Fault:
    path: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: Any
    times: int
    method: str | None = None
    after: bool = False  # process the request, then answer with the fault


class Answer(Exception):
    """Raised inside an endpoint to answer at once (a missing mailbox, say)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response[0])
        self.response = response


class HttpsEmulator(ABC):
    """Subclasses declare their endpoints as werkzeug routing rules (`routes`), each
    naming the method that answers it with the rule's arguments; `unrouted` answers a
    path or method no rule takes, in the service's own error shape."""

    routes = Map([])

    def __init__(
        self, folder: Path, stem: str, certificate: tuple[Path, Path] | None = None
    ) -> None:
        """`certificate`: another emulator's (cert, key) to share, so one CA file trusts
        both (the identity platform and Graph, say)."""
        cert, key = certificate or self_signed_cert(folder, stem)
        self.certificate = (cert, key)
        self.ca_file = str(cert)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpsEmulator:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(self, request: Request) -> Response:
        return self.dispatch(request)

    def dispatch(self, request: Request, **extra: Any) -> Response:
        """The answer of the endpoint whose rule matches (called with the rule's
        arguments and `extra`), or of `unrouted`."""
        adapter = self.routes.bind("127.0.0.1")
        try:
            endpoint, args = adapter.match(request.path, method=request.method)
        except NotFound:
            return self.unrouted(request, 404)
        except MethodNotAllowed:
            return self.unrouted(request, 405)
        try:
            answer: Response = getattr(self, str(endpoint))(request, **extra, **args)
        except Answer as answered:
            return answered.response
        return answer

    @abstractmethod
    def unrouted(self, request: Request, status: int) -> Response: ...

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def _fault_for(self, request: Request, after: bool) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if (
                    fault.times > 0
                    and fault.after == after
                    and (fault.method is None or fault.method == request.method)
                    and fault.path.search(request.path)
                ):
                    fault.times -= 1
                    return fault
        return None

    def _answer(self, request: Request) -> Response:
        with self.lock:
            self.requests.append((request.method, request.path))
        fault = self._fault_for(request, after=False)
        if fault is not None:
            return fault.status, fault.headers, fault.body
        response = self.route(request)
        fault = self._fault_for(request, after=True)
        if fault is not None:
            return fault.status, fault.headers, fault.body
        return response

    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One buffered write per answer and no Nagle delay: otherwise headers and body
            # go out as two segments and the client's delayed ACK costs 40 ms a request.
            disable_nagle_algorithm = True
            wbufsize = 1 << 16

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                request = Request(self.command, url.path, query, self.headers, body)
                status, headers, payload = emulator._answer(request)
                if payload is None:
                    data = b""
                elif isinstance(payload, bytes):
                    data = payload
                else:
                    data = json.dumps(payload, default=str).encode()
                    headers = {"Content-Type": "application/json; odata.metadata=minimal"} | headers
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler
