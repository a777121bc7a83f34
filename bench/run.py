"""`make bench`: Tollgate against plain Envoy, the mock alone and LiteLLM, all in one run.

Every target runs on loopback against the same mock provider (a separate Envoy serving canned
answers with `direct_response`), in the same run, with the same load:

  saturation  wrk, closed loop, CONNECTIONS connections, SATURATION_SECS in all after a warm-up
  latency     bench/loadgen at RATE requests/s over LATENCY_CONNECTIONS connections, open loop:
              each latency counts from the moment its request was due, so a stall is not hidden
              (coordinated omission); it also times the first byte, for the streamed targets
  CPU         the server's utime+stime from /proc, before and after each slice
  memory      the server's VmRSS, idle after start and after its runs

The machine is shared, so its load drifts: both measurements are cut into ROUNDS slices taken in
turn across all targets (round robin), and each target's slices are pooled. A drift then falls on
every target alike, and the ratios between rows hold. oha (--latency-correction) re-measures (2)
and (4) as a cross-check of bench/loadgen.

Rows 3m to 5m are (3) to (5) with Tollgate loaded as an Envoy dynamic module (the same filter
compiled natively, `tollgate render --module`) instead of the `.wasm`; row 2m is (2) with a
dynamic module that only holds each request until its body is in, as Tollgate's module does: the
floor under (3m) to (5m).

Rows 4f and 4fm are (4) and (4m) in fleet mode: `tollgate_settings.store` set, a real Redis 7
and webdis started here, each Envoy syncing with them every tick and admitting against its
leases; the row says how many store calls its requests made (tg_admit) beside the ticks' syncs.
Rows 7 to 8s are Anthropic's Messages API in (to Anthropic, passed through; to OpenAI, translated),
rows 9 to 10s OpenAI's Responses API in (to OpenAI, passed through; to Anthropic, translated).

Issue 14's goal (fleet p50/p99 within 10% of the same path without the store) is then measured
on its own: (4), (4f), (4m), (4fm) in turn over many short slices, 30 s each in all.

Rows 2a to 2c take Tollgate's bootstrap apart to show where its cost comes from: Envoy's filters
around it, a proxy-wasm filter that does nothing, and that filter making as many host calls as
Tollgate does. A perf profile of (2) and (4) splits the CPU by where it runs.

Prints the tables and rewrites the marked block of docs/BENCHMARKS.md (the analysis around it is
written by hand from a run).
"""

import argparse
import atexit
import copy
import datetime
import glob
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BENCH = os.path.join(ROOT, "bench")
FIXTURES = os.path.join(BENCH, "fixtures")
ENVOY = os.path.join(ROOT, ".venv", "bin", "envoy")
WASM = os.path.join(ROOT, "target", "wasm32-wasip1", "release", "tollgate.wasm")
CLI = os.path.join(ROOT, "target", "debug", "tollgate")
MODULE = os.path.join(ROOT, "target", "dynamic-module", "libtollgate_module.so")
LOADGEN = os.path.join(BENCH, "loadgen", "target", "release", "tollgate-bench-loadgen")
NOOP_WASM = os.path.join(BENCH, "noop-wasm", "target", "wasm32-wasip1", "release", "tollgate_bench_noop.wasm")
NOOP_MODULE = os.path.join(BENCH, "noop-module", "target", "release", "libtollgate_bench_noop_module.so")
LITELLM = os.path.join(ROOT, ".venv-bench", "bin", "litellm")
# The pinned oha that `make bench` installs with cargo, whatever else is on PATH.
OHA = os.path.join(os.environ.get("CARGO_HOME") or os.path.expanduser("~/.cargo"), "bin", "oha")
WRK = shutil.which("wrk") or "wrk"
DOC = os.path.join(ROOT, "docs", "BENCHMARKS.md")

WORKERS = os.cpu_count() or 2
CONNECTIONS = 32
WARMUP_SECS = 2
ROUNDS = 5
SATURATION_SECS = 10  # per target, in ROUNDS slices
RATE = 1000
LATENCY_CONNECTIONS = 8
LATENCY_SECS = 10  # per target, in ROUNDS slices
# Issue 14's comparison (fleet rows against the same path without the store), measured apart: more
# samples, both sides of a pair loaded at once with their requests interleaved, so that a p99
# difference of 10% stands out of the machine's noise (fleet_comparison).
# 30 slices: with 15, the pooled p99 difference of (4f) and (4) read -2.1% to +10.0% over three
# runs of the same build, the median of its slices' differences -0.1% to +2.9%.
FLEET_ROUNDS = 30
FLEET_LATENCY_SECS = 60  # per target, in FLEET_ROUNDS slices
# Each side of a pair at half of RATE: the machine serves RATE in all, as in the main latency rows.
# At RATE each, the .wasm pair's two Envoys alone take a core of the two and the queues' tail
# grows much faster than the load: (4f)'s 5% more CPU per request read +3% to +27% at p99 in six
# runs of `bench/fleet_probe.py --interleave --rate 1000` (the module pair, in two: -4% and +1%).
FLEET_PAIR_RATE = RATE // 2
SLICE_WARMUP_SECS = 0.2  # each latency slice opens new connections; their first requests are not counted
# A fleet-mode slice starts with the key's lease released (the other targets ran meanwhile): its
# first requests ask the store until the next syncs grow the lease. Three ticks (250 ms) bring it
# back to the steady state the fleet rows measure; the store calls of those starts are counted.
FLEET_SLICE_WARMUP_SECS = 0.75
OHA_SECS = 5
PERF_SECS = 6
STREAM_EVENTS = 50
# Host calls the calibration filter (2c) makes per request: about as many as Tollgate makes on (4).
CALIBRATION_HOST_CALLS = 40
LITELLM_START_TIMEOUT = 180
CLK_TCK = os.sysconf("SC_CLK_TCK")

COMMANDS = []  # every command that started a server or generated load, for the report


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def quoted(cmd):
    return " ".join(shlex.quote(c) for c in cmd)


# ---------------------------------------------------------------- processes

STARTED = []


def stop_all():
    for p in reversed(STARTED):
        stop(p)


def stop(proc):
    """Stops a process this script started, with its children (it leads its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def spawn(cmd, log_path, env=None):
    logf = open(log_path, "w")
    p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    STARTED.append(p)
    return p


def wait_http(url, proc, timeout, log_path):
    """Polls `url` every 2 ms until it answers 200; returns the seconds waited. Bounded."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{read(log_path)[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{read(log_path)[-3000:]}")


def process_tree(pid):
    """pid and all its descendants (LiteLLM runs one process per worker)."""
    children = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = read(stat).rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    total = 0
    for p in process_tree(pid):
        try:
            fields = read(f"/proc/{p}/stat").rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / CLK_TCK


def rss_bytes(pid):
    total = 0
    for p in process_tree(pid):
        try:
            m = re.search(r"VmRSS:\s+(\d+) kB", read(f"/proc/{p}/status"))
            total += int(m.group(1)) * 1024 if m else 0
        except OSError:
            continue
    return total


def log_time(line):
    """Seconds since midnight of an Envoy log line's timestamp (millisecond resolution)."""
    m = re.match(r"\[\d{4}-\d\d-\d\d (\d\d):(\d\d):(\d\d)\.(\d{3})\]", line)
    if not m:
        return None
    h, mi, sec, ms = (int(x) for x in m.groups())
    return h * 3600 + mi * 60 + sec + ms / 1000


class Envoy:
    def __init__(self, name, config, workdir, concurrency=WORKERS):
        self.name = name
        self.path = os.path.join(workdir, f"{name}.json")
        with open(self.path, "w") as f:
            json.dump(config, f)
        self.admin = config["admin"]["address"]["socket_address"]["port_value"]
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.concurrency = concurrency
        self.proc = None
        self.idle_rss = None

    def start(self):
        cmd = [ENVOY, "-c", self.path, "--concurrency", str(self.concurrency), "--use-dynamic-base-id", "-l", "info"]
        COMMANDS.append(quoted(cmd))
        self.proc = spawn(cmd, self.log_path)
        wait_http(f"http://127.0.0.1:{self.admin}/ready", self.proc, 60, self.log_path)
        time.sleep(0.2)
        self.idle_rss = rss_bytes(self.pid)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def listeners_to_workers_ms(self):
        """From Envoy loading its listeners to starting its workers: where an HTTP wasm filter is
        loaded (V8 compiles the module, instantiates it, the plugin configures itself)."""
        loading = starting = None
        for line in read(self.log_path).splitlines():
            if loading is None and re.search(r"loading \d+ listener\(s\)", line):
                loading = log_time(line)
            elif starting is None and "starting workers" in line:
                starting = log_time(line)
        return (starting - loading) * 1000 if loading is not None and starting is not None else float("nan")

    def counter(self, name):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/stats?filter=^{re.escape(name)}$", timeout=5) as r:
            m = re.search(r":\s*(\d+)", r.read().decode())
            return int(m.group(1)) if m else 0


# ---------------------------------------------------------------- configs

def admin(port):
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}


def mock_bootstrap(port, admin_port):
    """The mock provider: canned answers with Envoy's direct_response, routed by path prefix."""
    def answer(prefix, fixture, content_type):
        return {
            "match": {"prefix": prefix},
            "direct_response": {"status": 200, "body": {"inline_string": read(os.path.join(FIXTURES, fixture))}},
            "response_headers_to_add": [{"header": {"key": "content-type", "value": content_type},
                                         "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        }
    routes = [
        answer("/openai-stream/v1/responses", "responses_stream.sse", "text/event-stream; charset=utf-8"),
        answer("/openai/v1/responses", "responses_response.json", "application/json"),
        answer("/openai-stream/", "openai_stream.sse", "text/event-stream; charset=utf-8"),
        answer("/openai/", "openai_response.json", "application/json"),
        answer("/anthropic-stream/", "anthropic_stream.sse", "text/event-stream; charset=utf-8"),
        answer("/anthropic/", "anthropic_response.json", "application/json"),
        {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
    ]
    return {
        "admin": admin(admin_port),
        "static_resources": {"listeners": [{
            "name": "mock",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "mock",
                    "codec_type": "AUTO",
                    "route_config": {
                        "name": "mock",
                        # The 50-delta stream is larger than direct_response's 4 KB default.
                        "max_direct_response_body_size_bytes": 65536,
                        "virtual_hosts": [{"name": "mock", "domains": ["*"], "routes": routes}],
                    },
                    "http_filters": [
                        # Answer only once the whole request is in: a direct_response sent while the
                        # body is still being read makes Envoy close the connection after it, and
                        # every request would then pay for a new upstream connection.
                        {"name": "envoy.filters.http.buffer", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                            "max_request_bytes": 1 << 20}},
                        {"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                    ],
                },
            }]}],
        }]},
    }


def gateway_doc(mock_url):
    spec = yaml.safe_load(read(os.path.join(BENCH, "bench.yaml")))
    text = json.dumps(spec["gateway"]).replace("MOCK", mock_url)
    return spec["client_key"], json.loads(text)


def tollgate_bootstrap(doc, port, admin_port, workdir, module=False, name="tollgate"):
    """`tollgate render` of bench.yaml's gateway, exactly as users render it: with the `.wasm`,
    or with the dynamic module."""
    cfg = os.path.join(workdir, f"{name}-gateway.yaml")
    with open(cfg, "w") as f:
        yaml.safe_dump(doc, f)
    out = os.path.join(workdir, f"{name}-module-rendered.yaml" if module else f"{name}-rendered.yaml")
    cmd = [CLI, "render", cfg, "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin_port}",
           *(["--module", MODULE] if module else ["--wasm", WASM]), "-o", out]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"tollgate render failed:\n{r.stderr}")
    COMMANDS.append(quoted(cmd))
    return yaml.safe_load(read(out))


def hcm_of(bootstrap):
    return bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def floor_bootstrap(rendered, port, admin_port, filters=(), tollgate_routes=False):
    """Tollgate's own bootstrap minus Tollgate: the same listener, connection manager settings and
    cluster, every request routed to the mock's cluster, and only `filters` before the router.
    With no filters this is target (2), the floor every Envoy filter stands on. With
    `tollgate_routes`, Tollgate's routes stay (the cluster named by a request header)."""
    b = copy.deepcopy(rendered)
    b["admin"] = admin(admin_port)
    b.pop("stats_config", None)
    listener = b["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = port
    hcm = hcm_of(b)
    router = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.router"]
    hcm["http_filters"] = list(filters) + router
    hcm.pop("local_reply_config", None)
    clusters = b["static_resources"]["clusters"]
    if len(clusters) != 1:
        raise RuntimeError(f"expected one mock cluster in the rendered bootstrap, found {len(clusters)}")
    vhost = hcm["route_config"]["virtual_hosts"][0]
    timeout = vhost["routes"][0]["route"]["timeout"]
    if not tollgate_routes:
        vhost["routes"] = [{"match": {"prefix": "/"}, "route": {"cluster": clusters[0]["name"], "timeout": timeout}}]
    return b


def rendered_filter(rendered, name):
    return copy.deepcopy(next(f for f in hcm_of(rendered)["http_filters"] if f["name"] == name))


def noop_module_filter():
    """A dynamic module that holds each request until its body is in and does nothing else
    (bench/noop-module)."""
    return {"name": "noop", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        "dynamic_module_config": {"module": {"local": {"filename": NOOP_MODULE}}, "do_not_close": True},
        "filter_name": "noop"}}


# What Tollgate's module writes on (4m), as `curl -i` shows it (bench/bench.yaml's key and deployment).
TOLLGATE_RESPONSE_HEADERS = [
    ("x-ratelimit-limit-requests", "100000000"), ("x-ratelimit-remaining-requests", "99999999"),
    ("x-ratelimit-reset-requests", "29s"), ("x-ratelimit-limit-tokens", "100000000000"),
    ("x-ratelimit-remaining-tokens", "99999998750"), ("x-ratelimit-reset-tokens", "29s"),
    ("x-tollgate-key-alias", "bench"), ("x-tollgate-key-spend", "0.000000"), ("x-tollgate-key-max-budget", "1000000"),
    ("x-tollgate-model-id", "claude-bench.0"), ("x-tollgate-attempted-retries", "0"),
    ("x-tollgate-attempted-fallbacks", "0"), ("x-tollgate-response-cost", "0.001203"),
]


def mechanics_module_filter(rendered):
    """(2n): the no-op module asking of Envoy what Tollgate's module asks of it on (4m), without
    Tollgate's own work (bench/noop-module with a config)."""
    cluster = rendered["static_resources"]["clusters"][0]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    request = [("x-tollgate-cluster", cluster["name"]), (":path", "/anthropic/v1/messages"),
               (":authority", f"{address['address']}:{address['port_value']}"), ("content-type", "application/json"),
               ("user-agent", "tollgate/0.1.0"), ("x-api-key", "sk-ant-bench-placeholder"),
               ("anthropic-version", "2023-06-01")]
    lines = [f"request {k} {v}" for k, v in request] + [f"response {k} {v}" for k, v in TOLLGATE_RESPONSE_HEADERS]
    f = noop_module_filter()
    f["name"] = f["typed_config"]["filter_name"] = "mechanics"
    f["typed_config"]["filter_config"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                          "value": "\n".join(lines)}
    return f


def noop_wasm_filter(rendered, host_calls):
    """Tollgate's wasm filter entry with the do-nothing module in its place (bench/noop-wasm)."""
    f = rendered_filter(rendered, "envoy.filters.http.wasm")
    config = f["typed_config"]["config"]
    config["name"] = config["root_id"] = "noop"
    config["vm_config"]["vm_id"] = f"noop{host_calls}"
    config["vm_config"]["code"]["local"]["filename"] = NOOP_WASM
    config["configuration"]["value"] = str(host_calls)
    return f


# ---------------------------------------------------------------- load

def write_body(workdir, name, alias, stream, api="chat"):
    body = json.loads(read(os.path.join(FIXTURES, "chat_request.json")))
    body["model"] = alias
    if api == "responses":
        # The same conversation as OpenAI's Responses API has it (what the Agents SDK sends).
        body = {"model": alias, "instructions": body["messages"][0]["content"],
                "input": [{"role": m["role"], "content": m["content"]} for m in body["messages"][1:]],
                "max_output_tokens": body["max_tokens"], "temperature": body["temperature"], "user": body["user"]}
        if stream:
            body["stream"] = True
    elif api == "messages":
        # The same conversation as Anthropic's Messages API has it (what Claude Code's SDK sends).
        body = {"model": alias, "max_tokens": body["max_tokens"], "temperature": body["temperature"],
                "system": body["messages"][0]["content"], "messages": body["messages"][1:],
                "metadata": {"user_id": body["user"]}}
        if stream:
            body["stream"] = True
    elif stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    path = os.path.join(workdir, f"{name}.json")
    with open(path, "wb") as f:
        f.write(json.dumps(body, separators=(",", ":")).encode())
    return path


def wrk_script(workdir, name, body_path, headers):
    path = os.path.join(workdir, f"{name}.lua")
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    lines += [f'local f = io.open("{body_path}", "rb")', 'wrk.body = f:read("*a")', "f:close()"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run_wrk(url, script, secs, record=True):
    cmd = [WRK, "-t1", f"-c{CONNECTIONS}", f"-d{secs:g}s", "-s", script, url]
    if record:
        COMMANDS.append(quoted(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30)
    out = r.stdout
    if r.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed:\n{out}\n{r.stderr}")
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors += sum(int(x) for x in m.groups()) if m else 0
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "errors": errors,
    }


def run_oha(url, body_path, headers, rate, secs):
    cmd = [OHA, "--no-tui", "--output-format", "json", "-z", f"{secs}s", "-w", "-q", str(rate),
           "--latency-correction", "-c", str(LATENCY_CONNECTIONS), "-m", "POST", "-T", "application/json",
           "-D", body_path]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(url)
    COMMANDS.append(quoted(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
    if r.returncode != 0:
        raise RuntimeError(f"oha failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    j = json.loads(r.stdout)
    codes = {int(k): v for k, v in (j.get("statusCodeDistribution") or {}).items()}
    errors = sum(v for k, v in codes.items() if k != 200) + sum((j.get("errorDistribution") or {}).values())
    pct = j["latencyPercentiles"]
    return {
        "ok": codes.get(200, 0),
        "errors": errors,
        "p50": pct["p50"] * 1e6, "p90": pct["p90"] * 1e6, "p99": pct["p99"] * 1e6,
        "max": j["summary"]["slowest"] * 1e6,
    }


def run_loadgen(url, body_path, headers, rate, secs, raw, record, warmup=SLICE_WARMUP_SECS):
    """One loadgen run; `url` may be a list: those servers loaded at once, each at `rate`, their
    requests interleaved (the summary then has one entry per server under "targets")."""
    cmd = [LOADGEN]
    for u in [url] if isinstance(url, str) else url:
        cmd += ["--url", u]
    cmd += ["--body", body_path, "--rate", str(rate), "--connections", str(LATENCY_CONNECTIONS),
            "--duration", str(secs), "--warmup", str(warmup), "--raw", raw]
    for k, v in headers.items():
        cmd += ["--header", f"{k}: {v}"]
    if record:
        COMMANDS.append(quoted(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30)
    if r.returncode != 0:
        raise RuntimeError(f"loadgen failed:\n{r.stderr}")
    return json.loads(r.stdout)


def percentiles(values):
    v = sorted(values)
    if not v:
        return {k: float("nan") for k in ("p50", "p90", "p99", "max")}
    at = lambda q: v[min(len(v), max(1, math.ceil(len(v) * q))) - 1]
    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": v[-1]}


def post(url, body_path, headers):
    req = urllib.request.Request(url, data=read(body_path, "rb"), method="POST",
                                 headers=dict(headers, **{"Content-Type": "application/json"}))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check_answer(name, url, body_path, headers, kind):
    """One request before the load: the target must answer what it should, not a fast error."""
    status, body = post(url, body_path, headers)
    text = body.decode(errors="replace")
    ok = status == 200
    try:
        if kind == "openai":
            j = json.loads(body)
            ok = ok and j.get("object") == "chat.completion" and bool(j["choices"][0]["message"]["content"])
        elif kind == "openai-stream":
            chunks = [l for l in text.split("\n") if l.startswith("data: {")]
            ok = ok and text.rstrip().endswith("data: [DONE]") and len(chunks) >= STREAM_EVENTS
        elif kind == "anthropic":
            ok = ok and json.loads(body).get("type") == "message"
        elif kind == "responses":
            j = json.loads(body)
            ok = ok and j.get("object") == "response" and bool(j["output"][0]["content"][0]["text"])
        elif kind == "responses-stream":
            ok = ok and text.count("event: response.output_text.delta") == STREAM_EVENTS \
                and "event: response.completed" in text
        elif kind == "anthropic-stream":
            ok = ok and text.count("event: content_block_delta") == STREAM_EVENTS
    except (ValueError, KeyError, IndexError, TypeError):
        ok = False
    if not ok:
        raise RuntimeError(f"{name}: unexpected answer from {url}: {status} {text[:600]}")


def store_calls(envoy):
    """The store calls an Envoy's filter made, by call (`tollgate_store_calls_total{call,...}`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin}/stats?filter=store_calls", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for name, value in re.findall(r"^(\S*store_calls\S*): (\d+)$", text, re.M):
        call = re.search(r"tg_[a-z_]+", name)
        if call:
            out[call.group(0)] = out.get(call.group(0), 0) + int(value)
    return out


def latency_rounds(targets, acc, rounds, slice_secs, mock=None):
    """`rounds` latency slices of `slice_secs` per target, round robin, pooled into `acc`."""
    for rnd in range(rounds):
        log(f"latency, round {rnd + 1} of {rounds}")
        for t in targets:
            a = acc[t["id"]]
            rate = t.get("rate", RATE)
            cpu0 = cpu_seconds(t["pid"])
            mock_cpu0 = cpu_seconds(mock.pid) if mock else 0.0
            mock_rq0 = mock.counter("http.mock.downstream_rq_completed") if mock else 0
            warmup = t.get("slice_warmup", SLICE_WARMUP_SECS)
            # A fleet target's store admissions inside the measured part of the slice (after its
            # warm-up): the steady state should make none.
            envoy, at_warmup = t.get("envoy"), {}
            timer = threading.Timer(warmup, lambda: at_warmup.update(store_calls(envoy))) if envoy else None
            if timer:
                timer.start()
            g = run_loadgen(t["url"], t["body"], t["headers"], rate, slice_secs, a["raw"], record=rnd == 0,
                            warmup=warmup)
            if timer:
                timer.join()
                a["measured_admits"] += store_calls(envoy).get("tg_admit", 0) - at_warmup.get("tg_admit", 0)
            a["lat_cpu"] += cpu_seconds(t["pid"]) - cpu0
            if mock:
                a["mock_cpu"] += cpu_seconds(mock.pid) - mock_cpu0
                a["mock_rq"] += mock.counter("http.mock.downstream_rq_completed") - mock_rq0
            a["lat_errors"] += g["errors"]


def fleet_comparison(targets, workdir):
    """Issue 14's target, measured on its own: each fleet row and the same path without the store
    loaded at once by one loadgen, their requests interleaved (4, 4f, 4, 4f, ...), each at
    FLEET_PAIR_RATE, in FLEET_ROUNDS slices ((4) with (4f), then (4m) with (4fm), in turn). On this
    2-core machine the p99 of slices taken one after the other is set by a few stalls of the
    machine, which differ from slice to slice by more than 10%; loaded at once, both sides of a
    pair meet the same stalls, and the difference left is the store's. Per slice too, for the
    spread."""
    by = {t["id"]: t for t in targets}
    pairs = [(by[a], by[b]) for a, b in (("4", "4f"), ("4m", "4fm")) if a in by and b in by]
    for plain, fleet in pairs:
        if read(plain["body"]) != read(fleet["body"]):
            raise RuntimeError(f"({plain['id']}) and ({fleet['id']}) must send the same body")
    acc = {t["id"]: {"samples": [], "slices": [], "errors": 0, "measured_admits": 0} for p in pairs for t in p}
    for rnd in range(FLEET_ROUNDS):
        log(f"fleet pairs, interleaved, round {rnd + 1} of {FLEET_ROUNDS}")
        for plain, fleet in pairs:
            raw = os.path.join(workdir, f"pair-{plain['id']}-{rnd}.txt")
            envoy, at_warmup = fleet["envoy"], {}
            timer = threading.Timer(FLEET_SLICE_WARMUP_SECS, lambda: at_warmup.update(store_calls(envoy)))
            timer.start()
            g = run_loadgen([plain["url"], fleet["url"]], fleet["body"], fleet["headers"], FLEET_PAIR_RATE,
                            FLEET_LATENCY_SECS / FLEET_ROUNDS, raw, record=rnd == 0, warmup=FLEET_SLICE_WARMUP_SECS)
            timer.join()
            acc[fleet["id"]]["measured_admits"] += store_calls(envoy).get("tg_admit", 0) - at_warmup.get("tg_admit", 0)
            got = ([], [])
            for line in read(raw).splitlines():
                parts = line.split()
                if len(parts) == 4:
                    got[int(parts[3])].append(int(parts[1]))
            for i, t in enumerate((plain, fleet)):
                a = acc[t["id"]]
                a["samples"] += got[i]
                a["slices"].append(percentiles(got[i]))
                a["errors"] += g["targets"][i]["errors"]
    return {id_: dict(percentiles(a["samples"]), requests=len(a["samples"]), errors=a["errors"],
                      measured_admits=a["measured_admits"], slices=a["slices"]) for id_, a in acc.items()}


def measure(targets, mock, workdir):
    """Saturation, then latency at a fixed rate, for all `targets`, slice by slice in turn; CPU
    over each slice; RSS after. Returns one row per target."""
    acc = {t["id"]: {"sat_requests": 0, "sat_errors": 0, "sat_cpu": 0.0, "sat_slices": [],
                     "lat_errors": 0, "lat_cpu": 0.0, "mock_cpu": 0.0, "mock_rq": 0, "measured_admits": 0,
                     "raw": os.path.join(workdir, f"latency-{t['id']}.txt")}
           for t in targets}
    for t in targets:
        log(f"({t['id']}) {t['name']}: warm-up")
        run_wrk(t["url"], t["script"], WARMUP_SECS + t.get("extra_warmup", 0), record=False)
    slice_secs = SATURATION_SECS / ROUNDS
    for rnd in range(ROUNDS):
        log(f"saturation, round {rnd + 1} of {ROUNDS}")
        for t in targets:
            a = acc[t["id"]]
            cpu0 = cpu_seconds(t["pid"])
            w = run_wrk(t["url"], t["script"], slice_secs, record=rnd == 0)
            cpu = cpu_seconds(t["pid"]) - cpu0
            a["sat_cpu"] += cpu
            a["sat_requests"] += w["requests"]
            a["sat_slices"].append(cpu * 1000 / max(w["requests"], 1))
            a["sat_errors"] += w["errors"]
    latency_rounds(targets, acc, ROUNDS, LATENCY_SECS / ROUNDS, mock)
    rows = []
    for t in targets:
        a = acc[t["id"]]
        samples = [tuple(int(x) for x in line.split()) for line in read(a["raw"]).splitlines() if line.strip()]
        # Requests sent in the slices' uncounted first SLICE_WARMUP_SECS also cost CPU: count them.
        rate = t.get("rate", RATE)
        sent = len(samples) + a["lat_errors"] + round(rate * t.get("slice_warmup", SLICE_WARMUP_SECS)) * ROUNDS
        rows.append(dict(
            t, rate=rate,
            sat={"rps": a["sat_requests"] / SATURATION_SECS, "errors": a["sat_errors"],
                 "cpu_per_1k": a["sat_cpu"] * 1000 / max(a["sat_requests"], 1),
                 "slices_cpu_per_1k": a["sat_slices"]},
            lat=dict(percentiles([s[1] for s in samples]), requests=len(samples), errors=a["lat_errors"],
                     cpu_per_1k=a["lat_cpu"] * 1000 / max(sent, 1)),
            first_byte=percentiles([s[0] for s in samples]),
            mock_cpu_per_1k=a["mock_cpu"] * 1000 / max(sent, 1),
            upstream_per_request=a["mock_rq"] / max(sent, 1),
            measured_admits=a["measured_admits"],
            rss=rss_bytes(t["pid"])))
    return rows


def cross_check_oha(rows):
    """oha's own open-loop latency (--latency-correction) for (2) and (4), beside bench/loadgen's."""
    out = {}
    for r in rows:
        if r["id"] in ("2", "4", "4m"):
            out[r["id"]] = run_oha(r["url"], r["body"], r["headers"], RATE, OHA_SECS)
    return out


def perf_profile(workdir, name, pid, url, body, headers):
    """CPU of `pid` at RATE req/s for PERF_SECS, split by where it ran (perf's DSO sort): Envoy's
    own code (its binary is stripped, so no function names), the kernel, libc, and [JIT] code,
    which in this Envoy is the wasm module compiled by V8."""
    if not shutil.which("perf"):
        return None
    data = os.path.join(workdir, f"perf-{name}.data")
    cmd = ["perf", "record", "-F", "1999", "-o", data, "-p", str(pid), "--", "sleep", str(PERF_SECS)]
    COMMANDS.append(quoted(cmd))
    perf = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    lat = run_loadgen(url, body, headers, RATE, PERF_SECS - 1, os.devnull, record=False)
    try:
        perf.wait(timeout=PERF_SECS + 30)
        rep = subprocess.run(["perf", "report", "-i", data, "--sort", "dso", "--stdio", "-q"],
                             capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None
    shares = {}
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.+?)\s*$", line)
        if m:
            dso = m.group(2)
            dso = "[JIT] (wasm compiled by V8)" if dso.startswith("[JIT]") else dso
            shares[dso] = shares.get(dso, 0) + float(m.group(1))
    return {"shares": shares, "requests": lat["requests"]}


def memory_by_workers(rendered, rendered_module, workdir):
    """Idle RSS of plain Envoy and of Envoy + Tollgate (wasm, and dynamic module) at 1 and 4
    workers: what Tollgate adds per worker (the slope) apart from what it adds once per process
    (V8 and the compiled module, or the loaded library)."""
    out = {}
    for name, build in [("plain", lambda: floor_bootstrap(rendered, free_port(), free_port())),
                        ("tollgate", lambda: dict(copy.deepcopy(rendered), admin=admin(free_port()))),
                        ("module", lambda: dict(copy.deepcopy(rendered_module), admin=admin(free_port())))]:
        for workers in (1, 4):
            b = build()
            b["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = free_port()
            e = Envoy(f"{name}-{workers}w", b, workdir, concurrency=workers).start()
            time.sleep(0.5)
            out[(name, workers)] = rss_bytes(e.pid)
            stop(e.proc)
    result = {"raw": out}
    for name in ("tollgate", "module"):
        per_worker = ((out[(name, 4)] - out[(name, 1)]) - (out[("plain", 4)] - out[("plain", 1)])) / 3
        result[name] = {"per_worker": per_worker, "fixed": (out[(name, 1)] - out[("plain", 1)]) - per_worker}
    return result


# ---------------------------------------------------------------- LiteLLM

def litellm_doc(doc):
    """The gateway config without Tollgate's own sections (LiteLLM keeps virtual keys in a database)."""
    return {k: v for k, v in doc.items() if k not in ("keys", "teams")}


def start_litellm(doc, workdir):
    cfg = os.path.join(workdir, "litellm.yaml")
    with open(cfg, "w") as f:
        yaml.safe_dump(litellm_doc(doc), f)
    port = free_port()
    env = dict(os.environ)
    env.update({
        # Keep LiteLLM on loopback and quiet: the bundled model cost map, no telemetry, no UI.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_ADMIN_UI": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "NO_PROXY": "*",
    })
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "DATABASE_URL"):
        env.pop(k, None)
    cmd = [LITELLM, "--config", cfg, "--host", "127.0.0.1", "--port", str(port), "--num_workers", str(WORKERS)]
    COMMANDS.append(quoted(cmd))
    log_path = os.path.join(workdir, "litellm.log")
    proc = spawn(cmd, log_path, env=env)
    ready = wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, LITELLM_START_TIMEOUT, log_path)
    return proc, port, ready


# ---------------------------------------------------------------- criterion

def run_criterion():
    cmd = ["cargo", "bench", "--profile", "bench-native", "--bench", "translate"]
    COMMANDS.append(quoted(cmd))
    log("criterion micro-benchmarks: " + quoted(cmd))
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=420)
    if r.returncode != 0:
        raise RuntimeError(f"cargo bench failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    out = {}
    for est in glob.glob(os.path.join(ROOT, "target", "criterion", "*", "*", "new", "estimates.json")):
        group, name = est.split(os.sep)[-4:-2]
        out[f"{group}/{name}"] = json.loads(read(est))["median"]["point_estimate"]  # ns
    out.update(count_instructions(r.stderr))
    return out


WHOLE_FILTER = ["filter/passthrough", "filter/anthropic_virtual_key", "filter/anthropic_virtual_key_module",
                "filter/messages_passthrough", "filter/anthropic_virtual_key_fleet"]


def count_instructions(cargo_stderr):
    """Instructions per request of the whole-filter benchmarks, counted by callgrind: a figure
    that does not move with the machine's load, for before/after comparisons of the hot path.
    Keyed "instr/<benchmark>"; nothing when valgrind is not installed."""
    exe = re.search(r"(?:Running|Executable) benches/translate\.rs \((.*?)\)", cargo_stderr)
    if not shutil.which("valgrind") or not exe:
        return {}
    binary = os.path.join(ROOT, exe.group(1))
    out = {}
    for bench in WHOLE_FILTER:
        with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
            data = os.path.join(tmp, "callgrind.out")
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={data}",
                   "--toggle-collect=translate::whole_request", binary, "--bench", "--profile-time", "1", "--exact", bench]
            COMMANDS.append(quoted(cmd).replace(binary, os.path.relpath(binary, ROOT)))
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
            if r.returncode != 0 or not os.path.exists(data):
                continue
            total, calls = callgrind_per_call(read(data), "translate::whole_request")
            if calls:
                out[f"instr/{bench}"] = total / calls
    return out


def callgrind_per_call(text, function):
    """(instructions collected, calls of `function`) from a callgrind output file collected only
    inside `function` (--toggle-collect)."""
    total = next((int(m.group(1)) for m in re.finditer(r"^(?:summary|totals): (\d+)", text, re.M)), 0)
    ids = {m.group(1) for m in re.finditer(r"^c?fn=\((\d+)\) (.*)$", text, re.M) if m.group(2).endswith(function)}
    calls, lines = 0, text.splitlines()
    for i, line in enumerate(lines[:-1]):
        m = re.match(r"cfn=\((\d+)\)", line)
        c = re.match(r"calls=(\d+)", lines[i + 1])
        if m and c and m.group(1) in ids:
            calls += int(c.group(1))
    return total, calls


def count_host_calls():
    """bench/hostcalls.py's table: what one request of (3) to (5) asks of Envoy, by call."""
    cmd = [sys.executable, os.path.join(BENCH, "hostcalls.py"), "--wasm", WASM]
    COMMANDS.append(quoted(cmd))
    log("host calls per request: " + quoted(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return f"bench/hostcalls.py failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    return r.stdout.strip()


# ---------------------------------------------------------------- report

def machine():
    cpu = re.search(r"model name\s*:\s*(.+)", read("/proc/cpuinfo"))
    mem = re.search(r"MemTotal:\s+(\d+) kB", read("/proc/meminfo"))
    return {
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "cpu": cpu.group(1).strip() if cpu else "unknown",
        "memory": f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "unknown",
        "kernel": os.uname().release,
    }


def versions():
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"
    return {
        "envoy": first_line([ENVOY, "--version"]).split("version:")[-1].strip(),
        "wrk": first_line([WRK, "-v"]),
        "oha": first_line([OHA, "--version"]),
        "litellm": first_line([os.path.join(ROOT, ".venv-bench", "bin", "python"), "-c",
                               "import importlib.metadata as m; print(m.version('litellm'))"]),
        "rustc": first_line(["rustc", "--version"]),
    }


def n(x, digits=0):
    return "n/a" if x is None or x != x else f"{x:,.{digits}f}"


def slice_ratios(pair, base, k):
    """The fleet side's percentile `k` over the plain side's, slice by slice, sorted, as
    differences."""
    return sorted(a[k] / max(b[k], 1) - 1 for a, b in zip(pair.get("slices", []), base.get("slices", [])))


def fleet_table(rows):
    lines = ["| # | requests | tg_admit calls | per 1,000 requests | tg_admit calls in measured latency slices "
             "| tg_sync calls | p50 / p99 µs at rate, vs (4) or (4m) "
             f"| paired: p50 / p99 µs vs (4) or (4m), {FLEET_LATENCY_SECS} s each | paired: difference p50 / p99 "
             "| paired: p99 difference per slice, median (range) | paired: tg_admit calls in measured slices |",
             "|" + "---|" * 11]
    by = {r["id"]: r for r in rows}
    for r in rows:
        st = r.get("store")
        if not st:
            continue
        base = by.get(r["id"].replace("f", ""))
        vs = f"{n(r['lat']['p50'])} / {n(r['lat']['p99'])} vs {n(base['lat']['p50'])} / {n(base['lat']['p99'])}" \
            if base else "–"
        pair, bp = r.get("pair"), (base or {}).get("pair")
        if pair and bp:
            pvs = f"{n(pair['p50'])} / {n(pair['p99'])} vs {n(bp['p50'])} / {n(bp['p99'])}"
            diff = f"{pair['p50'] / max(bp['p50'], 1) - 1:+.1%} / {pair['p99'] / max(bp['p99'], 1) - 1:+.1%}"
            padm = f"{pair['measured_admits']:,}"
            per = slice_ratios(pair, bp, "p99")
            spread = f"{per[len(per) // 2]:+.1%} ({per[0]:+.0%} to {per[-1]:+.0%})" if per else "–"
        else:
            pvs = diff = padm = spread = "–"
        lines.append(f"| {r['id']} | {st['requests']:,} | {st['admits']:,} | {st['admits_per_1k']:.2f} | {r['measured_admits']:,} | {st['syncs']:,} "
                     f"| {vs} | {pvs} | {diff} | {spread} | {padm} |")
    return "\n".join(lines)


def main_table(rows):
    lines = ["| # | target | saturation req/s | vs (2) | CPU s/1k req, saturated | rate req/s | p50 µs | p90 µs "
             "| p99 µs | max µs | CPU s/1k req, at rate | errors | RSS MiB | upstream req per req |",
             "|" + "---|" * 14]
    floor = next(r for r in rows if r["id"] == "2")["sat"]["rps"]
    for r in rows:
        lat, sat = r["lat"], r["sat"]
        errors = sat["errors"] + lat["errors"]
        lines.append(
            f"| {r['id']} | {r['name']} | {n(sat['rps'])} | {sat['rps'] / floor:.2f} | {sat['cpu_per_1k']:.3f} "
            f"| {r['rate']} | {n(lat['p50'])} | {n(lat['p90'])} | {n(lat['p99'])} | {n(lat['max'])} "
            f"| {lat['cpu_per_1k']:.3f} | {errors} | {r['rss'] / 2**20:.1f} | {r['upstream_per_request']:.2f} |")
    return "\n".join(lines)


def streaming_table(rows, oha):
    lines = ["| # | target | first byte p50 µs | p90 µs | p99 µs | max µs | last byte p50 µs | p99 µs |",
             "|" + "---|" * 8]
    for r in rows:
        if r.get("stream"):
            f, l = r["first_byte"], r["lat"]
            lines.append(f"| {r['id']} | {r['name']} | {n(f['p50'])} | {n(f['p90'])} | {n(f['p99'])} "
                         f"| {n(f['max'])} | {n(l['p50'])} | {n(l['p99'])} |")
    return "\n".join(lines)


def oha_table(rows, oha):
    by = {r["id"]: r for r in rows}
    lines = [f"| # | bench/loadgen p50 / p99 µs ({LATENCY_SECS} s, interleaved) | oha p50 / p99 µs ({OHA_SECS} s, after) "
             "| oha errors |", "|---|---|---|---|"]
    for i, o in oha.items():
        l = by[i]["lat"]
        lines.append(f"| {i} | {n(l['p50'])} / {n(l['p99'])} | {n(o['p50'])} / {n(o['p99'])} | {o['errors']} |")
    return "\n".join(lines)


def startup_table(starts):
    lines = ["| Envoy | module bytes | listeners loaded → workers started (ms) | plugin configure, slowest VM (ms) "
             "| RSS idle MiB | RSS after load MiB |", "|---|---|---|---|---|---|"]
    for s in starts:
        lines.append(f"| {s['name']} | {n(s.get('wasm_bytes'))} | {n(s['load_ms'])} | {s.get('configure_ms', '–')} "
                     f"| {s['idle_rss'] / 2**20:.1f} | {s['rss'] / 2**20:.1f} |")
    return "\n".join(lines)


def perf_table(profiles, rows):
    if not profiles:
        return "perf is not installed: no profile."
    by = {r["id"]: r for r in rows}
    dsos = []
    for p in profiles.values():
        for d in p["shares"]:
            if d not in dsos:
                dsos.append(d)
    lines = ["| where the CPU went (perf, by DSO), µs per request at 1,000 req/s | "
             + " | ".join(f"({i})" for i in profiles) + " |", "|---|" + "---|" * len(profiles)]
    for d in dsos:
        cells = []
        for i, p in profiles.items():
            per_req = by[i]["lat"]["cpu_per_1k"] * 1000  # µs per request, from the latency run
            cells.append(f"{p['shares'].get(d, 0) * per_req / 100:.0f} ({p['shares'].get(d, 0):.0f}%)")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def criterion_table(micro):
    names = {
        "request/parse_chat": "parse a ~1 KB chat request (every provider pays this)",
        "request/openai": "request: parse + OpenAI pass-through body",
        "request/anthropic": "request: parse + Anthropic Messages body",
        "request/gemini": "request: parse + Gemini generateContent body",
        "request/bedrock": "request: parse + Bedrock Converse body",
        "response/openai": "response: OpenAI completion (pass-through rewrite)",
        "response/anthropic": "response: Anthropic message to OpenAI completion",
        "stream/anthropic_one_chunk": f"stream: {STREAM_EVENTS}-delta Anthropic SSE in one chunk, per delta",
        "stream/anthropic_chunk_per_event": "stream: the same, one chunk per event, per delta",
        "admission/key_and_team": "admission + settlement in shared data (virtual key and its team: budget, RPM/TPM, parallel)",
        "filter/passthrough": "whole filter, every callback, in-memory host: (3) pass-through with the virtual key",
        "filter/anthropic_virtual_key": "whole filter, every callback, in-memory host: (4) Anthropic with the virtual key",
        "filter/anthropic_virtual_key_module": "the same, with the body scans the dynamic module does in place of `json_to_metadata`: (4m)",
        "filter/messages_passthrough": "whole filter, every callback, in-memory host: (7) Messages API pass-through with the virtual key",
        "filter/anthropic_virtual_key_fleet": "whole filter, every callback, in-memory host: (4f), the store configured, "
                                              "the key's and team's leases holding the request (steady state)",
    }
    lines = ["| micro-benchmark (native, criterion median) | time | instructions per request (callgrind) |",
             "|---|---|---|"]
    for key, label in names.items():
        if key in micro:
            ns = micro[key] / (STREAM_EVENTS if key.startswith("stream/") else 1)
            instr = micro.get(f"instr/{key}")
            lines.append(f"| {label} | {ns / 1000:.2f} µs | {f'{instr:,.0f}' if instr else ''} |")
    return "\n".join(lines)


def goals(rows, facts, micro):
    """The issue's targets, each beside its floor where one was measured: the same figure for a
    filter in Tollgate's position that does none of Tollgate's work. For the `.wasm` that is (2b),
    a proxy-wasm filter that does nothing behind the body filters a wasm filter needs to route on
    the model; for the dynamic module (2n), what any filter rewriting the request and response
    this way asks of Envoy. A floor that misses the goal, or leaves less room than Tollgate's own
    work takes, puts the goal out of reach for that form in this Envoy."""
    by = {r["id"]: r for r in rows}
    p = lambda i, k: by[i]["lat"][k]
    sat = lambda i: by[i]["sat"]["rps"]
    c = lambda i: by[i]["lat"]["cpu_per_1k"]
    checks = []

    def check(name, value, goal, met, floor=""):
        checks.append((name, value, goal, "met" if met else "**missed**", floor))

    floor_of = {"4": "2b", "4m": "2n", "5": "2b", "5m": "2n"}

    def floor_text(four, value, ok):
        return f"({floor_of[four]}): {value}{'' if ok else ', missed'}"

    for four in ("4", "4m"):
        f = floor_of[four]
        d50, d99 = p(four, "p50") - p("2", "p50"), p(four, "p99") - p("2", "p99")
        f50, f99 = p(f, "p50") - p("2", "p50"), p(f, "p99") - p("2", "p99")
        check(f"({four}) p50 over (2) at 1,000 req/s", f"{d50:+,.0f} µs", "≤ 50 µs", d50 <= 50,
              floor_text(four, f"{f50:+,.0f} µs", f50 <= 50))
        check(f"({four}) p99 over (2) at 1,000 req/s", f"{d99:+,.0f} µs", "≤ 200 µs", d99 <= 200,
              floor_text(four, f"{f99:+,.0f} µs", f99 <= 200))
        check(f"({four}) saturation / (2)", f"{sat(four) / sat('2'):.0%}", "≥ 75%", sat(four) >= 0.75 * sat("2"),
              floor_text(four, f"{sat(f) / sat('2'):.0%}", sat(f) >= 0.75 * sat("2")))
        if "6" in by:
            check(f"({four}) saturation / LiteLLM (6)", f"{sat(four) / sat('6'):.1f}×", "≥ 20×",
                  sat(four) >= 20 * sat("6"))
        else:
            check(f"({four}) saturation / LiteLLM (6)", facts.get("litellm_error", "not run"), "≥ 20×", False)
    errors = sum(r["sat"]["errors"] + r["lat"]["errors"] for r in rows)
    check("errors, all targets", str(errors), "0", errors == 0)
    check("`.wasm` size", f"{facts['wasm_bytes']:,} B", "≤ 1.5 MB", facts["wasm_bytes"] <= 1_500_000)
    check("dynamic module size (`libtollgate_module.so`, for comparison; the goal names the `.wasm`)",
          f"{facts['module_bytes']:,} B", "≤ 1.5 MB", facts["module_bytes"] <= 1_500_000)
    mem = facts["memory"]
    for name, label in (("tollgate", "wasm"), ("module", "dynamic module")):
        check(f"RSS added per worker, {label} (idle, slope from 1 to 4 workers, over plain Envoy's)",
              f"{mem[name]['per_worker'] / 1e6:.2f} MB", "≤ 10 MB", mem[name]["per_worker"] <= 10_000_000)
    for five, label in (("5", "wasm"), ("5m", "dynamic module")):
        per = facts["rss_per_worker"][five]
        floor = ""
        if five == "5":
            f = (by["2b"]["rss"] - by["2s"]["rss"]) / WORKERS
            floor = f"(2b): {f / 1e6:.1f} MB{'' if f <= 10_000_000 else ', missed'}"
        check(f"RSS added per worker, {label}, as (Tollgate − plain) / {WORKERS} workers after load (includes the per-process part)",
              f"{per / 1e6:.1f} MB", "≤ 10 MB", per <= 10_000_000, floor)
    noop_start = facts["noop_start_ms"]
    check("plugin start, wasm: V8 compile + instantiate + configure (listeners → workers, over (2))",
          f"{facts['plugin_start_ms']:,.0f} ms", "< 100 ms", facts["plugin_start_ms"] < 100,
          f"(2b), a {facts['noop_wasm_bytes'] / 1000:,.0f} KB module: {noop_start:,.0f} ms{'' if noop_start < 100 else ', missed'}")
    check("plugin start, dynamic module: load + configure (listeners → workers, over (2))",
          f"{facts['module_start_ms']:,.0f} ms", "< 100 ms", facts["module_start_ms"] < 100)
    check("plugin start: configuration alone (plugin's own log, slowest VM)", f"{facts['configure_ms']:.3f} ms",
          "< 100 ms", facts["configure_ms"] < 100)
    # Issue 15: Anthropic's Messages API passed through costs no more than OpenAI's. One saturated
    # slice of (7) against (3)'s next to it reads anywhere from -15% to +9% on this machine
    # (`make bench-instructions`, 20 pairs a run), so the row gives the median of the rounds'
    # ratios and their range beside the pooled figures; `make bench-instructions` counts the
    # whole process's instructions, which the machine's load does not move.
    if "7" in by and "3" in by:
        s7, s3 = by["7"]["sat"]["cpu_per_1k"], by["3"]["sat"]["cpu_per_1k"]
        rounds = [x / max(y, 1e-9) - 1 for x, y in zip(by["7"]["sat"]["slices_cpu_per_1k"],
                                                        by["3"]["sat"]["slices_cpu_per_1k"])]
        d = sorted(rounds)[len(rounds) // 2]
        check("(7) Messages pass-through CPU per request, saturated, vs (3) the OpenAI pass-through: median "
              f"of the {len(rounds)} rounds' ratios (their range; pooled s/1k req)",
              f"{d:+.1%} ({min(rounds):+.1%} to {max(rounds):+.1%}; {s7:.3f} vs {s3:.3f})", "≤ +0%", d <= 0)
    for fleet, base in (("4f", "4"), ("4fm", "4m")):
        pair = by.get(fleet, {}).get("pair")
        if pair:
            for k in ("p50", "p99"):
                d = pair[k] / max(by[base]["pair"][k], 1) - 1
                per = slice_ratios(pair, by[base]["pair"], k)
                check(f"({fleet}) {k} vs ({base}), loaded at once, {FLEET_PAIR_RATE} req/s each, interleaved (store "
                      f"configured vs not): pooled (median of the {len(per)} slices' differences)",
                      f"{d:+.1%} ({per[len(per) // 2]:+.1%})" if per else f"{d:+.1%}", "≤ +10%", d <= 0.10)
    for four, five in (("4", "5"), ("4m", "5m")):
        upper = (c(five) - c("2s")) * 1000 / STREAM_EVENTS
        net = ((c(five) - c("2s")) - (c(four) - c("2"))) * 1000 / STREAM_EVENTS
        check(f"({five}) per-event CPU in Envoy, all of Tollgate's cost charged to events: (({five})−(2s)) / 50",
              f"{upper:.2f} µs", "< 5 µs", upper < 5)
        check(f"({five}) per-event CPU in Envoy, request path taken off: (({five})−(2s)−(({four})−(2))) / 50",
              f"{net:.2f} µs", "< 5 µs", net < 5)
    if "stream/anthropic_chunk_per_event" in micro:
        ev = micro["stream/anthropic_chunk_per_event"] / STREAM_EVENTS / 1000
        check("(5) per-event translation, native micro-benchmark, one chunk per event", f"{ev:.2f} µs", "< 5 µs",
              ev < 5)
    i7, i3 = micro.get("instr/filter/messages_passthrough"), micro.get("instr/filter/passthrough")
    if i7 and i3:
        check("(7) Messages pass-through, instructions per request (callgrind), against (3)'s",
              f"{i7:,.0f} (3: {i3:,.0f})", "≤ (3)", i7 <= i3)
    t2 = by["2s"]["first_byte"]["p50"]
    for five in ("5", "5m"):
        t5 = by[five]["first_byte"]["p50"]
        # The floors answer whole (non-streamed) responses: their first byte is their latency.
        f = p(floor_of[five], "p50") - p("2", "p50")
        check(f"({five}) first byte p50 over plain Envoy (2s)", f"{t5 - t2:+,.0f} µs", "≤ 100 µs", t5 - t2 <= 100,
              floor_text(five, f"{f:+,.0f} µs (its whole answer, over (2))", f <= 100))
    lines = ["| target | measured | goal | | floor: a filter in the same place doing none of Tollgate's work |",
             "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {g} | {m} | {fl} |" for a, b, g, m, fl in checks]
    return "\n".join(lines)


def report(rows, oha, starts, profiles, facts, micro, info, elapsed):
    m, v = info["machine"], info["versions"]
    mock_range = [r["mock_cpu_per_1k"] for r in rows if r["id"] not in ("1", "6")]
    return f"""<!-- bench:begin (written by `make bench` from bench/run.py; edit outside these markers) -->
Run {info['date']}: {elapsed:.0f} s of measurement; `make bench` took {info['total']} in all, builds included.
Machine: `nproc` {m['nproc']}, {m['memory']} memory, CPU "{m['cpu']}", Linux {m['kernel']}; load average {' '.join(info['load_before'])} before the run, {' '.join(info['load_after'])} after (the machine is shared).
Versions: Envoy {v['envoy']}; {v['wrk']}; {v['oha']}; LiteLLM {v['litellm']}; {v['rustc']}.
Envoy under test `--concurrency {WORKERS}`; the mock a separate Envoy, `--concurrency {WORKERS}`; LiteLLM `--num_workers {WORKERS}`, no database.
Saturation: wrk, 1 thread, {CONNECTIONS} connections, {SATURATION_SECS} s per target after a {WARMUP_SECS} s warm-up. Latency: [bench/loadgen](../bench/loadgen/src/main.rs), open loop at the rate shown over {LATENCY_CONNECTIONS} connections, {LATENCY_SECS} s per target, each latency from the moment its request was due. Both are taken in {ROUNDS} slices, round robin across targets (1) to (5), and pooled; (6) runs after, alone. CPU: the server process's utime+stime per 1,000 requests (for (1) the mock's, for (6) all of LiteLLM's processes). "upstream req per req": requests the mock served per request sent.

{main_table(rows)}

Fleet mode (4f, 4fm; a real Redis 7 and webdis on loopback): store calls its requests made, beside each Envoy process's one sync per tick (250 ms). "Paired" is issue 14's comparison measured on its own after the main run: (4) and (4f) loaded at once by one loadgen, their requests interleaved (4, 4f, 4, 4f, ...), each at {FLEET_PAIR_RATE} req/s ({2 * FLEET_PAIR_RATE} in all, the main rows' load), then (4m) and (4fm) the same way, in turn over {FLEET_ROUNDS} slices of {FLEET_LATENCY_SECS / FLEET_ROUNDS:.0f} s. Taken one after the other, the p99 of two such slices differs by more than 10% with nothing changed, set by a few stalls of this 2-core machine; loaded at once, both sides of a pair meet the same stalls:

{fleet_table(rows)}

Streaming: first and last byte at {RATE} req/s, from the same latency runs:

{streaming_table(rows, oha)}

Cross-check of the latency figures with oha:

{oha_table(rows, oha)}

Start and memory (RSS of the Envoy process; "listeners loaded → workers started" from Envoy's log, which is where it loads an HTTP wasm filter):

{startup_table(starts)}

Idle RSS by worker count: plain Envoy {facts['memory']['raw'][('plain', 1)] / 2**20:.1f} MiB at 1 worker, {facts['memory']['raw'][('plain', 4)] / 2**20:.1f} MiB at 4; with Tollgate's `.wasm` {facts['memory']['raw'][('tollgate', 1)] / 2**20:.1f} MiB at 1, {facts['memory']['raw'][('tollgate', 4)] / 2**20:.1f} MiB at 4; with the dynamic module {facts['memory']['raw'][('module', 1)] / 2**20:.1f} MiB at 1, {facts['memory']['raw'][('module', 4)] / 2**20:.1f} MiB at 4. The `.wasm` adds {facts['memory']['tollgate']['per_worker'] / 2**20:.2f} MiB per worker and {facts['memory']['tollgate']['fixed'] / 2**20:.1f} MiB once per Envoy process; the dynamic module {facts['memory']['module']['per_worker'] / 2**20:.2f} MiB per worker and {facts['memory']['module']['fixed'] / 2**20:.1f} MiB once.

{perf_table(profiles, rows)}

Host calls and VM entries per request, counted from Envoy's wasm trace log (one worker, the last of three requests per target, so metric definitions are not counted):

{facts['host_calls']}

The mock's own CPU per 1,000 requests behind a gateway: {min(mock_range):.3f}–{max(mock_range):.3f} s; it served {facts['mock_requests']:,} requests over {facts['mock_connections']:,} connections (keep-alive holds).

{criterion_table(micro)}

Against the issue's targets:

{goals(rows, facts, micro)}

Commands, in order (ports are picked free at run time; paths are the run's temporary directory; each wrk and loadgen line is one slice, run {ROUNDS} times in turn with the others):

```
{chr(10).join(COMMANDS)}
```
<!-- bench:end -->"""


def write_doc(block):
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    text = read(DOC) if os.path.exists(DOC) else "# Benchmarks\n\n<!-- bench:begin -->\n<!-- bench:end -->\n"
    new, count = re.subn(r"<!-- bench:begin.*?<!-- bench:end -->", lambda _: block, text, flags=re.S)
    if count == 0:
        new = text.rstrip() + "\n\n" + block + "\n"
    with open(DOC, "w") as f:
        f.write(new)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-litellm", action="store_true", help="skip target 6")
    ap.add_argument("--no-criterion", action="store_true", help="skip the criterion micro-benchmarks")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = ap.parse_args()
    for path in (ENVOY, WASM, MODULE, CLI, LOADGEN, NOOP_WASM, NOOP_MODULE, OHA):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run `make bench`, which builds and installs it")
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    started = time.monotonic()
    info = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "machine": machine(), "versions": versions(), "load_before": read("/proc/loadavg").split()[:3]}
    micro = {} if args.no_criterion else run_criterion()

    workdir = tempfile.mkdtemp(prefix="tollgate-bench-")
    log(f"work directory {workdir}")
    mock_port = free_port()
    mock = Envoy("mock", mock_bootstrap(mock_port, free_port()), workdir).start()
    mock_url = f"http://127.0.0.1:{mock_port}"
    key, doc = gateway_doc(mock_url)
    tg_port = free_port()
    rendered = tollgate_bootstrap(doc, tg_port, free_port(), workdir)
    j2m = rendered_filter(rendered, "envoy.filters.http.json_to_metadata")
    buffer = rendered_filter(rendered, "envoy.filters.http.buffer")
    floors = {}
    for id_, name, filters in [
        ("2", "plain", []),
        ("2a", "plain-j2m-buffer", [j2m, buffer]),
        ("2b", "plain-j2m-noop-buffer", [j2m, noop_wasm_filter(rendered, 0), buffer]),
        ("2c", "plain-j2m-noop40-buffer", [j2m, noop_wasm_filter(rendered, CALIBRATION_HOST_CALLS), buffer]),
        ("2m", "plain-noop-module", [noop_module_filter()]),
        ("2n", "plain-mechanics-module", [mechanics_module_filter(rendered)]),
    ]:
        port = free_port()
        b = floor_bootstrap(rendered, port, free_port(), filters, tollgate_routes=id_ == "2n")
        floors[id_] = (Envoy(name, b, workdir).start(), f"http://127.0.0.1:{port}")
    tollgate = Envoy("tollgate", rendered, workdir).start()
    tgm_port = free_port()
    rendered_module = tollgate_bootstrap(doc, tgm_port, free_port(), workdir, module=True)
    tollgate_module = Envoy("tollgate-module", rendered_module, workdir).start()
    auth = {"Authorization": f"Bearer {key}"}

    # Fleet mode: the same gateway with a shared store (Redis 7 + webdis, on loopback).
    sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
    from redis_stack import Stack  # noqa: E402 (the tests' harness: real redis-server and webdis)
    stack = Stack().start()
    atexit.register(stack.close)
    os.environ["TOLLGATE_STORE_AUTH"] = stack.webdis.auth
    fleet_doc = copy.deepcopy(doc)
    fleet_doc.setdefault("tollgate_settings", {})["store"] = {
        "url": stack.webdis.url, "auth": "os.environ/TOLLGATE_STORE_AUTH"}
    tgf_port, tgfm_port = free_port(), free_port()
    fleet_wasm = Envoy("tollgate-fleet", tollgate_bootstrap(fleet_doc, tgf_port, free_port(), workdir,
                                                             name="fleet"), workdir).start()
    fleet_module = Envoy("tollgate-fleet-module", tollgate_bootstrap(fleet_doc, tgfm_port, free_port(), workdir,
                                                                      module=True, name="fleet"), workdir).start()

    def target(id_, name, url, alias, stream, headers, kind, pid, api="chat", **extra):
        body = write_body(workdir, f"body-{id_}", alias, stream, api)
        check_answer(name, url, body, headers, kind)
        t = dict(id=id_, name=name, url=url, body=body, headers=headers, stream=stream, pid=pid, **extra)
        t["script"] = wrk_script(workdir, f"wrk-{id_}", body, headers)
        return t

    plain, plain_url = floors["2"]
    tg = f"http://127.0.0.1:{tg_port}/v1/chat/completions"
    tgm = f"http://127.0.0.1:{tgm_port}/v1/chat/completions"
    tg_messages = f"http://127.0.0.1:{tg_port}/v1/messages"
    tg_responses = f"http://127.0.0.1:{tg_port}/v1/responses"
    anthropic = "/anthropic/v1/messages"
    targets = [
        target("1", "client → mock directly", mock_url + anthropic, "claude-bench", False, {}, "anthropic", mock.pid),
        target("2", "client → plain Envoy (router only) → mock", plain_url + anthropic, "claude-bench", False, {},
               "anthropic", plain.pid),
        target("2s", "as (2), the 50-delta stream", plain_url + "/anthropic-stream/v1/messages", "claude-bench-stream",
               True, {}, "anthropic-stream", plain.pid),
        target("2a", "as (2) + Tollgate's json_to_metadata and buffer filters", floors["2a"][1] + anthropic,
               "claude-bench", False, {}, "anthropic", floors["2a"][0].pid),
        target("2b", "as (2a) + a proxy-wasm filter that does nothing", floors["2b"][1] + anthropic, "claude-bench",
               False, {}, "anthropic", floors["2b"][0].pid),
        target("2c", f"as (2b), the filter making {CALIBRATION_HOST_CALLS} host calls per request",
               floors["2c"][1] + anthropic, "claude-bench", False, {}, "anthropic", floors["2c"][0].pid),
        target("2m", "as (2) + a dynamic module that holds each request until its body is in, nothing else",
               floors["2m"][1] + anthropic, "claude-bench", False, {}, "anthropic", floors["2m"][0].pid),
        target("2n", "as (2m), the module asking of Envoy what Tollgate's does on (4m) (bodies put back, headers "
               "written, route matched again, response held), none of Tollgate's own work",
               floors["2n"][1] + anthropic, "claude-bench", False, {}, "anthropic", floors["2n"][0].pid),
        target("3", "Envoy + Tollgate, OpenAI alias (pass-through)", tg, "gpt-bench", False, auth, "openai",
               tollgate.pid),
        target("4", "Envoy + Tollgate, OpenAI → Anthropic, virtual key (budget, RPM/TPM, team), stats on", tg, "claude-bench", False, auth,
               "openai", tollgate.pid),
        target("5", "as (4), streamed (50 SSE deltas)", tg, "claude-bench-stream", True, auth, "openai-stream",
               tollgate.pid),
        target("7", "Envoy + Tollgate, Anthropic's Messages API in, to Anthropic (pass-through), virtual key",
               tg_messages, "claude-bench", False, auth, "anthropic", tollgate.pid, api="messages"),
        target("7s", "as (7), streamed (50 SSE deltas, relayed)", tg_messages, "claude-bench-stream", True, auth,
               "anthropic-stream", tollgate.pid, api="messages"),
        target("8", "as (7), to an OpenAI deployment (Messages → chat completions → Messages)", tg_messages,
               "gpt-bench", False, auth, "anthropic", tollgate.pid, api="messages"),
        target("8s", "as (8), streamed (50 OpenAI deltas → Messages events)", tg_messages, "gpt-bench-stream", True,
               auth, "anthropic-stream", tollgate.pid, api="messages"),
        target("9", "Envoy + Tollgate, OpenAI's Responses API in, to OpenAI (pass-through), virtual key", tg_responses,
               "gpt-bench", False, auth, "responses", tollgate.pid, api="responses"),
        target("9s", "as (9), streamed (50 typed text deltas, relayed)", tg_responses, "gpt-bench-stream", True, auth,
               "responses-stream", tollgate.pid, api="responses"),
        target("10s", "Responses API in, to Anthropic, streamed (50 Anthropic deltas → Responses events)",
               tg_responses, "claude-bench-stream", True, auth, "responses-stream", tollgate.pid, api="responses"),
        target("3m", "as (3), Tollgate as a dynamic module", tgm, "gpt-bench", False, auth, "openai",
               tollgate_module.pid),
        target("4m", "as (4), Tollgate as a dynamic module", tgm, "claude-bench", False, auth, "openai",
               tollgate_module.pid),
        target("5m", "as (5), Tollgate as a dynamic module", tgm, "claude-bench-stream", True, auth, "openai-stream",
               tollgate_module.pid),
        target("4f", "as (4), fleet mode: budgets and limits in Redis, admitted against leases",
               f"http://127.0.0.1:{tgf_port}/v1/chat/completions", "claude-bench", False, auth, "openai",
               fleet_wasm.pid, envoy=fleet_wasm, slice_warmup=FLEET_SLICE_WARMUP_SECS),
        target("4fm", "as (4f), Tollgate as a dynamic module", f"http://127.0.0.1:{tgfm_port}/v1/chat/completions",
               "claude-bench", False, auth, "openai", fleet_module.pid, envoy=fleet_module,
               slice_warmup=FLEET_SLICE_WARMUP_SECS),
    ]
    rows = measure(targets, mock, workdir)
    for r in rows:
        if "envoy" in r:
            envoy = r.pop("envoy")
            calls = store_calls(envoy)
            served = envoy.counter("http.tollgate.downstream_rq_completed")
            r["store"] = {"admits": calls.get("tg_admit", 0), "syncs": calls.get("tg_sync", 0), "requests": served,
                          "admits_per_1k": calls.get("tg_admit", 0) * 1000 / max(served, 1)}
    by = {r["id"]: r for r in rows}
    for id_, pair in fleet_comparison(targets, workdir).items():
        by[id_]["pair"] = pair
    log("oha cross-check of (2) and (4)")
    oha = cross_check_oha(rows)

    log("perf profiles of (2), (4) and (4m)")
    profiles = {}
    for t in (t for t in targets if t["id"] in ("2", "4", "4m")):
        prof = perf_profile(workdir, t["id"], t["pid"], t["url"], t["body"], t["headers"])
        if prof:
            profiles[t["id"]] = prof

    configure = [float(x) for x in re.findall(
        r"tollgate: configured \d+ deployments in \d+ model groups in ([\d.]+) ms", read(tollgate.log_path))]
    configure_module = [float(x) for x in re.findall(
        r"tollgate: configured \d+ deployments in \d+ model groups in ([\d.]+) ms", read(tollgate_module.log_path))]
    starts = [
        {"name": "(2) plain", "load_ms": plain.listeners_to_workers_ms(), "idle_rss": plain.idle_rss, "rss": by["2s"]["rss"]},
        {"name": "(2b) no-op wasm filter", "wasm_bytes": os.path.getsize(NOOP_WASM),
         "load_ms": floors["2b"][0].listeners_to_workers_ms(), "idle_rss": floors["2b"][0].idle_rss, "rss": by["2b"]["rss"]},
        {"name": "(3)–(5) Tollgate", "wasm_bytes": os.path.getsize(WASM), "load_ms": tollgate.listeners_to_workers_ms(),
         "configure_ms": f"{max(configure):.3f} ({len(configure)} VMs)" if configure else "not logged",
         "idle_rss": tollgate.idle_rss, "rss": by["5"]["rss"]},
        {"name": "(3m)–(5m) Tollgate, dynamic module", "wasm_bytes": os.path.getsize(MODULE),
         "load_ms": tollgate_module.listeners_to_workers_ms(),
         "configure_ms": f"{max(configure_module):.3f} (once per filter)" if configure_module else "not logged",
         "idle_rss": tollgate_module.idle_rss, "rss": by["5m"]["rss"]},
    ]
    facts = {
        "mock_requests": mock.counter("http.mock.downstream_rq_completed"),
        "mock_connections": mock.counter("http.mock.downstream_cx_total"),
        "wasm_bytes": os.path.getsize(WASM),
        "configure_ms": max(configure) if configure else float("nan"),
        "module_bytes": os.path.getsize(MODULE),
        "plugin_start_ms": starts[2]["load_ms"] - starts[0]["load_ms"],
        "module_start_ms": starts[3]["load_ms"] - starts[0]["load_ms"],
        "noop_start_ms": starts[1]["load_ms"] - starts[0]["load_ms"],
        "noop_wasm_bytes": os.path.getsize(NOOP_WASM),
        "rss_per_worker": {five: (by[five]["rss"] - by["2s"]["rss"]) / WORKERS for five in ("5", "5m")},
    }
    log("idle memory at 1 and 4 workers")
    facts["memory"] = memory_by_workers(rendered, rendered_module, workdir)
    facts["host_calls"] = count_host_calls()

    if not args.no_litellm:
        # LiteLLM last, with the Envoys idle, so its background tasks disturb no other row.
        log("starting LiteLLM (target 6); its imports take a while")
        try:
            proc, port, ready = start_litellm(doc, workdir)
            facts["litellm_ready_s"] = ready
            master = {"Authorization": f"Bearer {doc['general_settings']['master_key']}"}
            t6 = target("6", "LiteLLM proxy, OpenAI → Anthropic, master key", f"http://127.0.0.1:{port}/v1/chat/completions",
                        "claude-bench", False, master, "openai", proc.pid, extra_warmup=3)
            probe = run_wrk(t6["url"], t6["script"], 3, record=False)
            # An open-loop rate above what the server sustains measures only its queue: LiteLLM gets
            # half of what it reached saturated (at most RATE); the table shows the rate it ran at.
            t6["rate"] = max(10, min(RATE, int(probe["rps"] * 0.5 / 10) * 10))
            rows += measure([t6], mock, workdir)
            stop(proc)
        except RuntimeError as e:
            facts["litellm_error"] = "did not run: " + str(e).splitlines()[0]
            log(f"LiteLLM: {e}")

    info["load_after"] = read("/proc/loadavg").split()[:3]
    # `make bench` notes when it started, so the report covers its builds and installs too.
    clock = os.path.join(ROOT, "build", "bench-started")
    total = time.time() - float(read(clock)) if os.path.exists(clock) else None
    total = total if total is not None and total < 3600 else None
    info["total"] = f"{total:.0f} s" if total is not None else "n/a (run outside `make bench`)"
    block = report(rows, oha, starts, profiles, facts, micro, info, time.monotonic() - started)
    print(block)
    if not args.no_doc:
        write_doc(block)
        log(f"wrote {os.path.relpath(DOC, ROOT)}")


if __name__ == "__main__":
    main()
