"""What one request asks of Envoy: host calls and VM entries per request, by kind.

Starts the mock provider and Tollgate's rendered bootstrap (bench/bench.yaml, as `make bench`
does) with Envoy's wasm trace log on (`--component-log-level wasm:trace`, one worker), sends each
of targets (3) to (5) a few times, and counts the calls the trace shows for the last request of
each: `vm->host` lines are host calls the filter makes (proxy_get_header_map_value, ...),
`host->vm` lines are entries into the VM (callbacks, and proxy_on_memory_allocate for every host
call that returns data). The first requests define the metrics; the last shows the steady state.

    .venv/bin/python bench/hostcalls.py            # table of calls per request
    .venv/bin/python bench/hostcalls.py --verbose  # and every call of the last request, in order
"""

import argparse
import collections
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as B  # noqa: E402

CALL = re.compile(r"\[(vm->host|host->vm)\] (?:env\.|wasi_snapshot_preview1\.)?(\w+)\(([^)]*)\)")
TARGETS = [("3", "gpt-bench", False), ("4", "claude-bench", False), ("5", "claude-bench-stream", True)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm", default=B.WASM, help="the .wasm to load (default: the release build)")
    ap.add_argument("--verbose", action="store_true", help="print the last request's calls in order")
    ap.add_argument("--fleet", action="store_true",
                    help="with the shared store configured (Redis + webdis, as target (4f) of the fleet probe)")
    args = ap.parse_args()
    import atexit
    atexit.register(B.stop_all)
    workdir = tempfile.mkdtemp(prefix="tollgate-hostcalls-")
    mock_port = B.free_port()
    B.Envoy("mock", B.mock_bootstrap(mock_port, B.free_port()), workdir).start()
    key, doc = B.gateway_doc(f"http://127.0.0.1:{mock_port}")
    if args.fleet:
        sys.path.insert(0, os.path.join(B.ROOT, "tests", "e2e"))
        from redis_stack import Stack  # noqa: E402
        stack = Stack().start()
        atexit.register(stack.close)
        os.environ["TOLLGATE_STORE_AUTH"] = stack.webdis.auth
        doc.setdefault("tollgate_settings", {})["store"] = {
            "url": stack.webdis.url, "auth": "os.environ/TOLLGATE_STORE_AUTH"}
    port = B.free_port()
    rendered = B.tollgate_bootstrap(doc, port, B.free_port(), workdir)
    for f in B.hcm_of(rendered)["http_filters"]:
        if f["name"] == "envoy.filters.http.wasm":
            f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = os.path.abspath(args.wasm)
    path = os.path.join(workdir, "tollgate.json")
    with open(path, "w") as out:
        B.json.dump(rendered, out)
    log_path = os.path.join(workdir, "tollgate.log")
    proc = B.spawn([B.ENVOY, "-c", path, "--concurrency", "1", "--use-dynamic-base-id", "-l", "info",
                    "--component-log-level", "wasm:trace"], log_path)
    B.wait_http(f"http://127.0.0.1:{rendered['admin']['address']['socket_address']['port_value']}/ready",
                proc, 60, log_path)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    auth = {"Authorization": f"Bearer {key}"}
    rows = []
    if args.fleet:
        # Until the first syncs granted the parties' leases, a request asks the store to admit it.
        body = B.write_body(workdir, "body-warmup", TARGETS[0][1], False)
        for _ in range(8):
            B.post(url, body, auth)
            time.sleep(0.3)
    for target, alias, stream in TARGETS:
        body = B.write_body(workdir, f"body-{target}", alias, stream)
        for _ in range(3):
            time.sleep(0.3)
            start = os.path.getsize(log_path)
            status, _ = B.post(url, body, auth)
            if status != 200:
                sys.exit(f"({target}) answered {status}")
        time.sleep(0.5)
        with open(log_path, errors="replace") as f:
            f.seek(start)
            text = f.read()
        calls, order = collections.Counter(), []
        for line in text.splitlines():
            m = CALL.search(line)
            if m:
                kind = "host call" if m.group(1) == "vm->host" else "VM entry"
                calls[(kind, m.group(2))] += 1
                order.append(f"{kind:9} {m.group(2)}({m.group(3)})")
        rows.append((target, calls, order))
    kinds = sorted({k for _, c, _ in rows for k in c}, key=lambda k: (k[0] != "host call", k[1]))
    print("| calls per request | " + " | ".join(f"({t})" for t, _, _ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for kind in kinds:
        print(f"| {kind[0]}: {kind[1]} | " + " | ".join(str(c.get(kind, 0)) for _, c, _ in rows) + " |")
    for label in ("host call", "VM entry"):
        plural = label.replace("entry", "entrie") + "s"
        print(f"| **{plural}, total** | " + " | ".join(
            str(sum(v for k, v in c.items() if k[0] == label)) for _, c, _ in rows) + " |")
    if args.verbose:
        for target, _, order in rows:
            print(f"\n({target}), in order:")
            print("\n".join(order))


if __name__ == "__main__":
    main()
