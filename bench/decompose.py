#!/usr/bin/env python3
"""Where (4m)'s cost over plain Envoy comes from, measured (`make bench-decompose`).

Five Envoys on the same mock, saturated in turn by wrk, slice after slice (as `make bench` does):

  2            plain Envoy, router only
  2n           + bench/noop-module asking of Envoy what Tollgate's module asks (bodies put back,
               headers written, route matched again, response held): Envoy's part
  2n+tollgate  + Tollgate's whole filter run per request on the in-memory host of its unit tests:
               Tollgate's own work, with no calls into Envoy beyond (2n)'s
  2n+spin      + a register-only loop as long as that work takes on an idle core: the same time
               of work, touching no memory
  4m           Tollgate as a dynamic module, the real thing

If (2n+tollgate) costs what (4m) costs, Tollgate's calls into Envoy beyond (2n)'s (stats, header
and attribute reads) cost little and its own computation is the rest; (2n+spin) against
(2n+tollgate) separates what that computation costs by its length from what it costs by the code
and data it brings into the caches that Envoy's own work then misses. Not part of `make bench`
(which must stay under ten minutes); prints one table.
"""

import argparse
import copy
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as B  # noqa: E402

WORK_MODULE = os.path.join(B.BENCH, "noop-module", "target", "work", "release",
                           "libtollgate_bench_noop_module.so")


def work_filter(rendered, line):
    """(2n)'s filter from the `work` build, with one more config line."""
    f = B.mechanics_module_filter(rendered)
    f["typed_config"]["dynamic_module_config"]["module"]["local"]["filename"] = WORK_MODULE
    f["typed_config"]["filter_config"]["value"] += "\n" + line
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6, help="slices of 2 s per target (default 6)")
    args = ap.parse_args()
    for path in (B.ENVOY, B.MODULE, B.NOOP_MODULE, WORK_MODULE):
        if not os.path.exists(path):
            sys.exit(f"missing {path}: run `make bench-decompose`")
    workdir = tempfile.mkdtemp(prefix="tollgate-decompose-")
    try:
        mock_port = B.free_port()
        B.Envoy("mock", B.mock_bootstrap(mock_port, B.free_port()), workdir).start()
        key, doc = B.gateway_doc(f"http://127.0.0.1:{mock_port}")
        auth = {"Authorization": f"Bearer {key}"}
        rendered = B.tollgate_bootstrap(doc, B.free_port(), B.free_port(), workdir, module=True)
        plain_body = B.write_body(workdir, "body-plain", "claude-bench", False)
        targets = {}

        def floor(name, filters, routes):
            port = B.free_port()
            r = B.floor_bootstrap(rendered, port, B.free_port(), filters, tollgate_routes=routes)
            e = B.Envoy(name, r, workdir).start()
            url = f"http://127.0.0.1:{port}/anthropic/v1/messages"
            targets[name] = (e, url, B.wrk_script(workdir, f"wrk-{name}", plain_body, {}))

        floor("2", [], False)
        floor("2n", [B.mechanics_module_filter(rendered)], True)
        floor("2n+tollgate", [work_filter(rendered, "work tollgate -")], True)
        floor("2n+spin", [work_filter(rendered, "work spin match")], True)
        port = B.free_port()
        r = copy.deepcopy(rendered)
        r["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = port
        e = B.Envoy("4m", r, workdir).start()
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = B.write_body(workdir, "body-4m", "claude-bench", False)
        B.check_answer("4m", url, body, auth, "openai")
        targets["4m"] = (e, url, B.wrk_script(workdir, "wrk-4m", body, auth))

        for name, (e, url, script) in targets.items():
            w = B.run_wrk(url, script, 1, record=False)
            if w["errors"]:
                sys.exit(f"{name}: {w['errors']} errors during warm-up")
        totals = {name: [0, 0.0] for name in targets}
        for _ in range(args.rounds):
            for name, (e, url, script) in targets.items():
                before = B.cpu_seconds(e.pid)
                w = B.run_wrk(url, script, 2, record=False)
                if w["errors"]:
                    sys.exit(f"{name}: {w['errors']} errors")
                totals[name][0] += w["requests"]
                totals[name][1] += B.cpu_seconds(e.pid) - before

        hot = ""
        log = os.path.join(workdir, "2n+spin.log")
        if os.path.exists(log):
            m = re.search(r"work: one Tollgate request takes (\d+) ns hot", open(log).read())
            hot = f"{int(m.group(1)) / 1000:.1f}" if m else ""
        base_requests, base_cpu = totals["2"]
        base = base_cpu * 1e6 / base_requests
        n_cpu = totals["2n"][1] * 1e6 / totals["2n"][0]
        print(f"{args.rounds} slices of 2 s per target, interleaved; wrk -t1 -c{B.CONNECTIONS}; "
              f"Envoy --concurrency {B.WORKERS}.")
        print(f"One Tollgate request on the in-memory host, hot, on an idle core: {hot} µs.\n")
        print("| target | saturation req/s | vs (2) | Envoy CPU µs per request | over (2n) |")
        print("|---|---|---|---|---|")
        for name, (requests, cpu) in totals.items():
            per = cpu * 1e6 / requests
            over = "" if name == "2" else f"{per - n_cpu:+.1f}"
            print(f"| {name} | {requests / (2 * args.rounds):,.0f} | {requests / base_requests:.2f} "
                  f"| {per:.1f} | {over} |")
        print(f"\n(2): {base:.1f} µs per request. Logs in {workdir}.")
    finally:
        B.stop_all()


if __name__ == "__main__":
    main()
