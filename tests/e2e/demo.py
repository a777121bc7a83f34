"""`make demo`: every mock provider on 127.0.0.1 (ports from MOCK_PORT, 9100 by default; a busy one
is replaced by a free port, and said so) and a gateway config that routes to them, so the gateway
can be tried without provider keys. Checks that the gateway's own ports (LISTEN, ADMIN) are free,
writes the config and an env file, then serves until interrupted.

Usage: demo.py OUT_DIR [--mock-port N] [--listen HOST:PORT] [--admin HOST:PORT]
Exits 1 with one line naming the port when it cannot go on (no env file is written then)."""

import argparse
import errno
import os
import signal
import socket
import sys
import threading

import yaml

sys.path.insert(0, os.path.dirname(__file__))

from conftest import MASTER_KEY, gateway_config, gateway_env  # noqa: E402
from mocks import all_mock_classes  # noqa: E402


class PortError(Exception):
    pass


def host_port(flag, value):
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise PortError(f"{flag}={value} is not HOST:PORT")
    return host or "0.0.0.0", int(port)


def check_free(flag, value):
    """Fails with the port's name when Envoy could not bind it."""
    host, port = host_port(flag, value)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            why = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e.strerror})"
            raise PortError(f"{value} ({flag}) {why}: free it, or run e.g. `make demo {flag}={host}:{port + 1}`") from None


def start_mocks(base):
    """Every mock, the i-th on base+i when that port is free, else on a free port."""
    mocks = {}
    for i, cls in enumerate(all_mock_classes()):
        mock, want = cls(), base + i
        try:
            mock.start(port=want)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise PortError(f"mock {cls.name}: 127.0.0.1:{want} cannot be bound ({e.strerror})") from None
            mock.start(port=0)
            print(f"port {want} is busy: mock {cls.name} takes {mock.port} instead", flush=True)
        mocks[cls.name] = mock
    return mocks


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default="build")
    ap.add_argument("--mock-port", type=int, default=int(os.environ.get("MOCK_PORT") or 9100))
    ap.add_argument("--listen")
    ap.add_argument("--admin")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    env_file = os.path.join(args.out_dir, "demo.env")
    mocks = {}
    try:
        for flag in ("listen", "admin"):
            if getattr(args, flag):
                check_free(flag.upper(), getattr(args, flag))
        mocks = start_mocks(args.mock_port)
    except PortError as e:
        for m in mocks.values():
            m.stop()
        print(f"make demo: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    config = gateway_config(mocks)
    config["model_list"] = [m for m in config["model_list"] if m["model_name"] != "dead-end"]
    with open(os.path.join(args.out_dir, "demo.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    # Written whole, then renamed: `make demo` sources it as soon as it exists.
    with open(env_file + ".tmp", "w") as f:
        for k, v in gateway_env(mocks).items():
            f.write(f"export {k}={v}\n")
    os.replace(env_file + ".tmp", env_file)
    for m in mocks.values():
        print(f"mock {m.name:10s} {m.base_url}", flush=True)
    print(f"gateway key: {MASTER_KEY}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
