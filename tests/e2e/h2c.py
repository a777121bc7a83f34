"""A small HTTP/2 cleartext (prior knowledge) client for the tests that need HTTP/2's own behaviour.

curl and the SDKs' HTTP/2 clients give up on a response that arrives while they are still sending
the body (Envoy answers 413 and then resets the stream with NO_ERROR, as RFC 9113 8.1 allows);
this one keeps the response, and reports how much of the body the server let it send."""

import socket
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions


@dataclass
class H2Response:
    status: int | None = None
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    sent: int = 0  # body bytes the client got to send
    reset: bool = False  # the server reset the stream (after or instead of a response)


def post(port, path, body, headers, timeout=20):
    """POSTs `body` over one new h2c connection to 127.0.0.1:`port`; returns an H2Response."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    out = H2Response()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":path", path), (":scheme", "http"),
                                (":authority", "127.0.0.1"), ("content-length", str(len(body))),
                                *headers.items()], end_stream=not body)
        s.sendall(conn.data_to_send())
        s.setblocking(False)
        deadline = time.monotonic() + timeout
        done = False
        while not done and time.monotonic() < deadline:
            # Send what the flow-control windows allow, a frame at a time, between reads.
            if out.sent < len(body):
                n = min(len(body) - out.sent, conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if n > 0:
                    try:
                        conn.send_data(sid, body[out.sent:out.sent + n], end_stream=out.sent + n == len(body))
                        out.sent += n
                    except h2.exceptions.ProtocolError:  # the stream is closed
                        out.sent = len(body)
            pending = conn.data_to_send()
            if pending:
                s.setblocking(True)
                try:
                    s.sendall(pending)
                except OSError:
                    break
                s.setblocking(False)
            try:
                raw = s.recv(65536)
            except BlockingIOError:
                if out.sent >= len(body):
                    time.sleep(0.002)
                continue
            except OSError:
                break
            if not raw:
                break
            for event in conn.receive_data(raw):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    out.headers = dict(event.headers)
                    out.status = int(out.headers[":status"])
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    out.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                    done = True
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                    out.reset = done = True
    return out
