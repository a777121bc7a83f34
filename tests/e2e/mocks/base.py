"""The shared machinery of the mock providers: an HTTP/1.1 server on 127.0.0.1 that records each
request and answers from a script (or the provider's default answer)."""

import collections
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    method: str
    path: str  # without the query
    query: dict
    headers: dict  # lower-case names
    body: bytes

    @property
    def json(self):
        return json.loads(self.body) if self.body else None


# Scripted answers ---------------------------------------------------------------------------

@dataclass
class Json:
    body: object
    status: int = 200
    headers: dict = field(default_factory=dict)


@dataclass
class Raw:
    body: bytes
    status: int = 200
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class Stream:
    """A streamed body: each item is written (and flushed) as its own HTTP chunk.

    `split` cuts the whole body into pieces of that many bytes instead, to exercise translators
    on arbitrary boundaries; `delay` sleeps between pieces."""

    parts: list
    status: int = 200
    content_type: str = "text/event-stream"
    headers: dict = field(default_factory=dict)
    split: int = 0
    delay: float = 0.0
    abort_after: int = -1  # close the connection after this many parts (a broken upstream)


@dataclass
class Close:
    """Close the connection without answering."""


@dataclass
class Hang:
    seconds: float


def sse(events):
    """Encodes (event, data) pairs or plain data items as SSE frames."""
    out = []
    for e in events:
        if isinstance(e, tuple):
            name, data = e
            data = data if isinstance(data, str) else json.dumps(data)
            out.append(f"event: {name}\ndata: {data}\n\n".encode())
        else:
            data = e if isinstance(e, str) else json.dumps(e)
            out.append(f"data: {data}\n\n".encode())
    return out


class MockProvider:
    name = "mock"
    env = {}

    def __init__(self):
        self.received = []
        self.incomplete = 0  # requests whose body never arrived whole
        self.script = collections.deque()
        # An answer for every request while set (a deployment that keeps failing or is slow);
        # scripted answers still come first.
        self.forced = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.server = None

    # What the shared gateway routes here; overridden per provider.
    def model_list(self, base_url):
        return []

    def respond(self, req):
        """The provider's default answer when nothing is scripted."""
        return Json({"error": "no default response"}, status=500)

    # ------------------------------------------------------------------------------------------

    @property
    def port(self):
        return self.server.server_address[1]

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, port=0):
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self):
                """The request body, or None when the connection ended before the body did
                (Envoy resets an upstream request the gateway refused after sending headers:
                a real provider never processes such a request, so it is not recorded)."""
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        line = self.rfile.readline()
                        if not line:
                            return None
                        size = int(line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunk = self.rfile.read(size)
                        if len(chunk) < size:
                            return None
                        chunks.append(chunk)
                        self.rfile.readline()
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                return body if len(body) == n else None

            def _handle(self):
                try:
                    body = self._body()
                except (ValueError, OSError):
                    body = None
                if body is None:
                    mock.incomplete += 1
                    self.close_connection = True
                    return
                url = urlsplit(self.path)
                req = Received(
                    method=self.command,
                    path=url.path,
                    query={k: v[0] for k, v in parse_qs(url.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with mock._cond:
                    mock.received.append(req)
                    action = mock.script.popleft() if mock.script else mock.forced
                    mock._cond.notify_all()
                if action is None:
                    action = mock.respond(req)
                elif callable(action):
                    action = action(req)
                mock._send(self, action)

            do_POST = do_GET = do_PUT = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                # Envoy closes pooled upstream connections when a test gateway stops: not an error.
                import sys
                if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
                    return
                super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def _send(self, h, action):
        if isinstance(action, Hang):
            time.sleep(action.seconds)
            action = Json({"late": True})
        if isinstance(action, Close):
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if isinstance(action, Json):
            action = Raw(json.dumps(action.body).encode(), action.status, action.headers)
        if isinstance(action, Raw):
            h.send_response(action.status)
            h.send_header("content-type", action.content_type)
            h.send_header("content-length", str(len(action.body)))
            for k, v in action.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(action.body)
            h.wfile.flush()
            return
        if isinstance(action, Stream):
            parts = [p if isinstance(p, bytes) else p.encode() for p in action.parts]
            if action.split:
                whole = b"".join(parts)
                parts = [whole[i:i + action.split] for i in range(0, len(whole), action.split)]
            h.send_response(action.status)
            h.send_header("content-type", action.content_type)
            h.send_header("transfer-encoding", "chunked")
            for k, v in action.headers.items():
                h.send_header(k, v)
            h.end_headers()
            try:
                for i, p in enumerate(parts):
                    if i == action.abort_after:
                        h.close_connection = True
                        h.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if p:
                        h.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
                        h.wfile.flush()
                    if action.delay:
                        time.sleep(action.delay)
                h.wfile.write(b"0\r\n\r\n")
                h.wfile.flush()
            except OSError:
                pass
            return
        raise TypeError(f"unknown mock action {action!r}")

    # Test helpers -------------------------------------------------------------------------------

    def reset(self):
        with self._lock:
            self.received.clear()
            self.script.clear()
            self.incomplete = 0
            self.forced = None

    def enqueue(self, *actions):
        with self._lock:
            self.script.extend(actions)

    def last(self):
        with self._lock:
            assert self.received, f"{self.name} mock received no request"
            return self.received[-1]

    def count(self):
        with self._lock:
            return len(self.received)

    def wait_for(self, n, timeout=10):
        with self._cond:
            return self._cond.wait_for(lambda: len(self.received) >= n, timeout)
