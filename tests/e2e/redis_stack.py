"""A real Redis 7 (AOF on) and webdis in front of it, on 127.0.0.1, for the tests of Tollgate's
shared state: started, stopped, killed and restarted by the tests, with their data kept in a
temporary directory across restarts."""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

from harness import free_port

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
WEBDIS = shutil.which("webdis") or "/usr/bin/webdis"

# What webdis lets through: the commands Tollgate sends, and only with its credentials.
WEBDIS_COMMANDS = ["FCALL", "FCALL_RO", "FUNCTION"]
WEBDIS_USER, WEBDIS_PASSWORD = "tollgate", "webdis-test-Xq7Lm2Rp"


def _wait_port(port, proc, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} in {timeout}s")


def _stop(proc, sig=signal.SIGTERM, timeout=10):
    if proc and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


class Redis:
    """redis-server with AOF (`appendfsync always`: nothing acknowledged is lost on a restart)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tollgate-redis-")
        self.port = free_port()
        self.proc = None

    def start(self):
        log = open(os.path.join(self.dir, "redis.log"), "a")
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--protected-mode", "yes", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, "redis-server")
        # Loading the AOF happens before the first command is answered.
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.command("PING") == "PONG":
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def command(self, *args):
        """One command over RESP, for test set-up and inspection (not the filter's path)."""
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(out)
                return _read_resp(s.makefile("rb"))
        except OSError:
            return None

    def stop(self):
        """A clean shutdown (the AOF is fsynced on every write anyway)."""
        _stop(self.proc)

    def kill(self):
        _stop(self.proc, signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _read_resp(f):
    line = f.readline()
    if not line:
        return None
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_resp(f) for _ in range(n)]
    raise RuntimeError(f"unexpected RESP reply {line!r}")


class Webdis:
    """webdis in front of a Redis: only `WEBDIS_COMMANDS`, only with basic auth."""

    def __init__(self, redis, user=WEBDIS_USER, password=WEBDIS_PASSWORD):
        self.redis = redis
        self.user, self.password = user, password
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tollgate-webdis-")
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self):
        return f"{self.user}:{self.password}"

    def config(self):
        return {
            "redis_host": "127.0.0.1", "redis_port": self.redis.port, "redis_auth": None,
            "http_host": "127.0.0.1", "http_port": self.port, "threads": 2, "pool_size": 8,
            "daemonize": False, "database": 0, "verbosity": 3,
            "logfile": os.path.join(self.dir, "webdis.log"),
            "acl": [
                {"disabled": ["*"]},
                {"http_basic_auth": self.auth, "enabled": WEBDIS_COMMANDS},
            ],
        }

    def start(self, config=None):
        """Starts webdis with `self.config()`, or with `config` (a dict, e.g. what
        `tollgate webdis-config` wrote; it must listen on `self.port`)."""
        path = os.path.join(self.dir, "webdis.json")
        with open(path, "w") as f:
            json.dump(config or self.config(), f)
        self.proc = subprocess.Popen([WEBDIS, path], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, "webdis")
        return self

    def call(self, *segments, auth=True, timeout=10, tail=None):
        """POSTs `SEGMENT/SEGMENT/...` (each percent-encoded, as the filter sends them), or with
        `tail`, PUTs `/SEGMENT/...` with `tail` as the body, unencoded: webdis makes it the last
        argument (how the filter sends a sync's payload). Returns (HTTP status, parsed JSON body or
        raw bytes).

        Through http.client, not urllib: urllib says `Connection: close`, and webdis 0.1.9 never
        answers such a request when its body arrives in a later TCP segment (as http.client
        sends it). Envoy's upstream requests never say it."""
        body = "/".join(urllib.parse.quote(str(s), safe="") for s in segments).replace(".", "%2E")
        headers = {"content-type": "text/plain"}
        if auth:
            headers["authorization"] = "Basic " + base64.b64encode(self.auth.encode()).decode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if tail is None:
                conn.request("POST", "/", body=body.encode(), headers=headers)
            else:
                tail = tail if isinstance(tail, bytes) else str(tail).encode()
                conn.request("PUT", "/" + body, body=tail, headers=headers)
            r = conn.getresponse()
            status, raw = r.status, r.read()
        finally:
            conn.close()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def call_when_up(self, *segments, timeout=10):
        """`call`, retried while webdis answers 503 (it reconnects to a restarted Redis lazily,
        failing the first calls)."""
        deadline = time.time() + timeout
        while True:
            try:
                status, body = self.call(*segments, timeout=1)
            except OSError:
                status, body = 503, b"timed out"
            if status != 503 or time.time() > deadline:
                return status, body
            time.sleep(0.05)

    def stop(self):
        _stop(self.proc)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Stack:
    """Redis and webdis together: `with Stack() as s: ...`."""

    def __init__(self):
        self.redis = Redis()
        self.webdis = Webdis(self.redis)

    def start(self):
        self.redis.start()
        self.webdis.start()
        return self

    def close(self):
        self.webdis.close()
        self.redis.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
