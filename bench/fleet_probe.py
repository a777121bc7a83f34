"""Issue 14's tail, probed: (4) and (4f) (and, with --module, (4m) and (4fm)) side by side in short
alternating slices, each slice's samples kept apart, so that the fleet rows' slow requests can be
placed in the period of the store's sync (`tick_ms`): a tail made by the tick's work gathers in a
few phases of the period, one made by steady extra work does not.

    .venv/bin/python bench/fleet_probe.py [--tick-ms 250] [--rounds 10] [--secs 2] [--module]
        [--appendfsync always|everysec|no] [--interleave [--rate 500]]

Needs what `make bench` builds (bench/run.py checks). Prints p50/p99 per target and, per fleet
target, the share of its requests slower than the plain target's p99 in each tenth of the period.
With --interleave, runs `make bench`'s paired comparison instead (each pair loaded at once, its
requests interleaved) and prints pooled and per-slice differences.
"""

import argparse
import copy
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(__file__))
import run as bench  # noqa: E402


def slice_samples(path):
    """(latency µs, sent at µs) of one slice's raw file."""
    out = []
    for line in bench.read(path).splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out.append((int(parts[1]), int(parts[2])))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tick-ms", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--secs", type=float, default=2.0)
    ap.add_argument("--module", action="store_true", help="the dynamic module's pair too")
    ap.add_argument("--appendfsync", choices=("always", "everysec", "no"), default="always",
                    help="Redis's AOF fsync policy (the tests' Stack uses always)")
    ap.add_argument("--interleave", action="store_true",
                    help="load each pair at once, requests interleaved, instead of slice after slice")
    ap.add_argument("--rate", type=int, default=bench.FLEET_PAIR_RATE, help="requests per second per target")
    args = ap.parse_args()
    import atexit
    atexit.register(bench.stop_all)
    workdir = tempfile.mkdtemp(prefix="tollgate-fleet-probe-")
    mock_port = bench.free_port()
    mock = bench.Envoy("mock", bench.mock_bootstrap(mock_port, bench.free_port()), workdir).start()
    key, doc = bench.gateway_doc(f"http://127.0.0.1:{mock_port}")
    auth = {"Authorization": f"Bearer {key}"}
    sys.path.insert(0, os.path.join(bench.ROOT, "tests", "e2e"))
    from redis_stack import Stack  # noqa: E402
    stack = Stack().start()
    atexit.register(stack.close)
    stack.redis.command("CONFIG", "SET", "appendfsync", args.appendfsync)
    os.environ["TOLLGATE_STORE_AUTH"] = stack.webdis.auth
    fleet_doc = copy.deepcopy(doc)
    fleet_doc.setdefault("tollgate_settings", {})["store"] = {
        "url": stack.webdis.url, "auth": "os.environ/TOLLGATE_STORE_AUTH", "tick_ms": args.tick_ms}
    if args.tick_ms > 1000:  # the default replica TTL must outlast a tick and a sync
        fleet_doc["tollgate_settings"]["store"]["replica_ttl_ms"] = 4 * args.tick_ms
    forms = [False, True] if args.module else [False]
    targets = []
    for module in forms:
        suffix = "m" if module else ""
        for fleet in (False, True):
            port = bench.free_port()
            d = fleet_doc if fleet else doc
            name = ("fleet" if fleet else "tollgate") + ("-module" if module else "")
            envoy = bench.Envoy(name, bench.tollgate_bootstrap(d, port, bench.free_port(), workdir, module=module,
                                                               name=name), workdir).start()
            id_ = "4" + ("f" if fleet else "") + suffix
            body = bench.write_body(workdir, f"body-{id_}", "claude-bench", False)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            bench.check_answer(id_, url, body, auth, "openai")
            targets.append(dict(id=id_, url=url, body=body, envoy=envoy, fleet=fleet,
                                warmup=bench.FLEET_SLICE_WARMUP_SECS if fleet else bench.SLICE_WARMUP_SECS))
    for t in targets:
        bench.run_loadgen(t["url"], t["body"], auth, bench.RATE, 3, os.devnull, record=False, warmup=0.5)
    if args.interleave:
        return interleaved(targets, auth, workdir, args)
    samples = {t["id"]: [] for t in targets}
    cpu = {t["id"]: 0.0 for t in targets}
    store_cpu = {t["id"]: 0.0 for t in targets}
    store_pids = [p for p in (getattr(stack.redis, "proc", None), getattr(stack.webdis, "proc", None)) if p]
    admits = {t["id"]: 0 for t in targets}
    for rnd in range(args.rounds):
        bench.log(f"round {rnd + 1} of {args.rounds}")
        for t in targets:
            raw = os.path.join(workdir, f"raw-{t['id']}-{rnd}.txt")
            c0 = bench.cpu_seconds(t["envoy"].pid)
            s0 = sum(bench.cpu_seconds(p.pid) for p in store_pids)
            # The store admissions of the slice's measured part (after its warm-up).
            at_warmup = {}
            timer = None
            if t["fleet"]:
                timer = threading.Timer(t["warmup"], lambda t=t: at_warmup.update(bench.store_calls(t["envoy"])))
                timer.start()
            bench.run_loadgen(t["url"], t["body"], auth, bench.RATE, args.secs, raw, record=False, warmup=t["warmup"])
            if timer:
                timer.join()
                admits[t["id"]] += bench.store_calls(t["envoy"]).get("tg_admit", 0) - at_warmup.get("tg_admit", 0)
            cpu[t["id"]] += bench.cpu_seconds(t["envoy"].pid) - c0
            store_cpu[t["id"]] += sum(bench.cpu_seconds(p.pid) for p in store_pids) - s0
            samples[t["id"]].append(slice_samples(raw))
    period_us = args.tick_ms * 1000
    print(f"tick_ms {args.tick_ms}, {args.rounds} slices of {args.secs} s per target at {bench.RATE} req/s")
    for t in targets:
        lat = [s[0] for sl in samples[t["id"]] for s in sl]
        p = bench.percentiles(lat)
        sent = bench.RATE * (args.secs + t["warmup"]) * args.rounds
        print(f"({t['id']}) n={len(lat)} p50={p['p50']} p90={p['p90']} p99={p['p99']} max={p['max']}; "
              f"Envoy CPU {cpu[t['id']] * 1e6 / sent:.0f} µs/request, Redis+webdis {store_cpu[t['id']] * 1e6 / sent:.1f}"
              + (f"; {admits[t['id']]} store admissions (tg_admit) in the measured parts" if t["fleet"] else ""))
    def phases(slices, bar):
        """Requests slower than `bar`: how many, and their share in each tenth of the period, per
        slice ordered busiest first (the phase is the slice's own: loadgen and Envoy share no
        clock), averaged by rank. Uniform noise already ranks its busiest tenth above 10%: the
        plain target, which has no tick, is the control."""
        slow = total = 0
        ranked = [0.0] * 10
        for sl in slices:
            bins = [0] * 10
            for lat, at in sl:
                if lat > bar:
                    bins[(at % period_us) * 10 // period_us] += 1
            slow += sum(bins)
            total += len(sl)
            shares = sorted((b / max(sum(bins), 1) for b in bins), reverse=True)
            ranked = [r + x / len(slices) for r, x in zip(ranked, shares)]
        return slow, total, " ".join(f"{100 * r:.0f}%" for r in ranked)

    for module in forms:
        suffix = "m" if module else ""
        plain = [s[0] for sl in samples["4" + suffix] for s in sl]
        bar = bench.percentiles(plain)["p99"]
        for id_ in ("4" + suffix, "4f" + suffix):
            slow, total, ranked = phases(samples[id_], bar)
            print(f"({id_}) slower than (4{suffix})'s p99 ({bar} µs): {slow} of {total} "
                  f"({100 * slow / max(total, 1):.2f}%); by tenth of the period, busiest first: {ranked}")


def interleaved(targets, auth, workdir, args):
    """`make bench`'s pairs (bench/run.py fleet_comparison): each pair loaded at once by one
    loadgen, requests alternating, so what stalls the machine delays both sides alike."""
    bench.FLEET_ROUNDS, bench.FLEET_LATENCY_SECS = args.rounds, args.rounds * args.secs
    bench.FLEET_PAIR_RATE = args.rate
    for t in targets:
        t["headers"] = auth
    out = bench.fleet_comparison(targets, workdir)
    print(f"interleaved pairs, {args.rounds} slices of {args.secs} s at {args.rate} req/s per target")
    for plain, fleet in (("4", "4f"), ("4m", "4fm")):
        if plain not in out:
            continue
        a, b = out[plain], out[fleet]
        print(f"({plain}) p50={a['p50']} p99={a['p99']}  ({fleet}) p50={b['p50']} p99={b['p99']}  "
              f"pooled: p50 {b['p50'] / a['p50'] - 1:+.1%} p99 {b['p99'] / a['p99'] - 1:+.1%}; "
              f"{b['measured_admits']} tg_admit calls in the measured parts")
        for q in ("p50", "p99"):
            r = bench.slice_ratios(b, a, q)
            print(f"  per-slice {q} differences: median {r[len(r) // 2]:+.1%}, range {r[0]:+.0%} .. {r[-1]:+.0%}")


if __name__ == "__main__":
    main()
