"""Starts the real Envoy with the built Tollgate .wasm and a config rendered by `tollgate render`."""

import json
import os
import shutil

import socket
import subprocess
import tempfile
import time
import urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ENVOY = os.path.join(ROOT, ".venv", "bin", "envoy")
WASM = os.path.join(ROOT, "target", "wasm32-wasip1", "release", "tollgate.wasm")
CLI = os.path.join(ROOT, "target", "debug", "tollgate")
MODULE = os.path.join(ROOT, "target", "dynamic-module", "libtollgate_module.so")
# Which form of the filter Envoy loads: the .wasm (default) or the dynamic module
# (TOLLGATE_FILTER=module, `make e2e-module`). The whole suite runs against each.
FILTER = os.environ.get("TOLLGATE_FILTER", "wasm")
if FILTER not in ("wasm", "module"):
    raise RuntimeError(f"TOLLGATE_FILTER must be wasm or module, not {FILTER!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_built(filter_=FILTER):
    filter_file = (MODULE, "make module") if filter_ == "module" else (WASM, "make wasm")
    for path, how in ((ENVOY, "make setup"), filter_file, (CLI, "make cli")):
        if not os.path.exists(path):
            raise RuntimeError(f"{path} is missing: run `{how}` (or `make test`)")


def run_cli(*args, env=None):
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, env=env)


class Envoy:
    """One Envoy process with Tollgate loaded from `config` (a dict in LiteLLM's shape), as the
    form `filter_` names (`wasm` or `module`; by default the suite's, TOLLGATE_FILTER)."""

    def __init__(self, config, env=None, concurrency=2, filter_=FILTER, extra_args=()):
        if filter_ not in ("wasm", "module"):
            raise ValueError(f"filter_ must be wasm or module, not {filter_!r}")
        check_built(filter_)
        self.filter = filter_
        self.workdir = tempfile.mkdtemp(prefix="tollgate-e2e-")
        self.config_path = os.path.join(self.workdir, "config.yaml")
        with open(self.config_path, "w") as f:
            yaml.safe_dump(config, f)
        self.port = free_port()
        self.admin_port = free_port()
        self.envoy_yaml = os.path.join(self.workdir, "envoy.yaml")
        self.log_path = os.path.join(self.workdir, "envoy.log")
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.concurrency = concurrency
        self.extra_args = list(extra_args)
        self.proc = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def render(self):
        r = run_cli(
            "render", self.config_path,
            "--listen", f"127.0.0.1:{self.port}",
            "--admin", f"127.0.0.1:{self.admin_port}",
            *(("--module", MODULE) if self.filter == "module" else ("--wasm", WASM)),
            "-o", self.envoy_yaml,
            env=self.env,
        )
        if r.returncode != 0:
            raise RuntimeError(f"tollgate render failed:\n{r.stderr}")

    def start(self, expect_failure=False, timeout=30):
        self.render()
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [ENVOY, "-c", self.envoy_yaml, "--concurrency", str(self.concurrency),
             "--use-dynamic-base-id", "-l", "info", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                if expect_failure:
                    return self
                raise RuntimeError(f"Envoy exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        if expect_failure:
                            raise RuntimeError("Envoy started although the config was expected to be refused")
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        log = self.log()
        self.stop()
        raise RuntimeError(f"Envoy did not become ready in {timeout}s:\n{log[-4000:]}")

    def wait_exit(self, timeout=20):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stats(self, filter_=""):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats?filter={filter_}", timeout=5) as r:
            return r.read().decode()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def http(method, url, body=None, headers=None, timeout=30):
    """A raw HTTP call (for cases the SDK would not send). Returns (status, headers, body bytes)."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
