"""Tollgate's Redis Functions library (src/store/tollgate.lua), called through webdis as the filter
calls it: leases and budgets that hold across replicas (granted and released in deltas, never set
absolutely), exactly-once syncs, dead-replica reclaim, windows on Redis's clock, keys and aliases,
the change log, spend logs, and all of it surviving a Redis restart and a kill -9."""

import hashlib
import json
import os
import random
import re
import time

import pytest

from harness import FILTER, ROOT
from redis_stack import Stack

pytestmark = pytest.mark.skipif(FILTER == "module", reason="no filter involved: run once")

LIBRARY_PATH = os.path.join(ROOT, "src", "store", "tollgate.lua")
with open(LIBRARY_PATH) as f:
    LIBRARY = f.read()
VERSION = re.search(r"^local VERSION = '([^']+)'", LIBRARY, re.M).group(1)

KEY = "a" * 64  # a key hash

# The library each VERSION names: replicas reload the library only when its version differs, so a
# change to the file without a new VERSION would leave a fleet running the old one.
LIBRARY_SHA256 = {
    "1": "2763ba0217b164a49ba60c5e85ed9f901cc5b2d4e355d72cf7b989f43138f2fd",
    "2": "07f07a4cb134e5645f209f40ceceb8a58a772f6ef695d79632fe35de70c3377c",
    "3": "fc8d08b50ce8ca2ca7dcfb6d121bbaecd7d6cb2bc3779f5fd8505b44ed73ec2e",
    "4": "2610f552d05faff18287921ddd47b28ec024726e0f9b5e4c2d505d4342d78130",
    "5": "02bd440831653b6f06d1b3e99a7c39bb11a9849371e05c12363f8eefd0c3122c",
    "6": "645a30ae8dab0f3d31c6eb9781b5cbfdf88d656b079848d15d5695a807bf748e",
    "7": "f3927d1703d7a0062ac8b77f700a48753fb1e939ac089a2a5544a8ac48b953c1",
    "8": "4c021dde36f95d41bda64d6a399c40dafe6a0cade83972e87a45705a3d5d084a",
    "9": "8c9d59f84e39e3f5ffff3c396da3e8333d6fd6aac7c64b6af48ab1be41599300",
    "10": "18fd3c7340be051edeaa61282fb9059fb2d1ebac5c07b829b0f17d1def65d3e5",
}

# A party's fleet-wide fields in a reply (tg_sync adds granted, m and reset; tg_admit granted).
PARTY_FIELDS = {"id", "spend", "lifetime", "window_start", "leased", "leased_parallel", "requests", "tokens",
                "replicas"}


def record_blocks(records):
    """Spend records as tg_sync takes them after the payload's line (as the filter writes them):
    per key, in the order keys first appear, `<key> <n> <bytes>\n` + the JSON texts joined by
    newlines + `\n`."""
    by_key = {}
    for rec in records:
        key = rec.get("key_hash") or rec.get("api_key") or "-"
        by_key.setdefault(key, []).append(json.dumps(rec, separators=(",", ":")))
    out = ""
    for key, texts in by_key.items():
        body = "\n".join(texts)
        out += f"{key} {len(texts)} {len(body.encode())}\n{body}\n"
    return out


class Lib:
    """The library's functions over webdis; each returns the parsed JSON document."""

    def __init__(self, stack):
        self.stack = stack

    # Calls keep the connection alive as Envoy does (see `Webdis.call`), and are never retried: a
    # retry could apply a call twice.
    def load(self):
        out = self.stack.webdis.call("FUNCTION", "LOAD", "REPLACE", LIBRARY)
        assert out == (200, {"FUNCTION": "tollgate"})

    def wait_up(self):
        """After a Redis restart webdis answers 503 until it has reconnected."""
        assert self.stack.webdis.call_when_up("FCALL", "tg_version", 0)[0] == 200

    def call(self, function, *args, tail=None):
        status, body = self.stack.webdis.call("FCALL", function, 0, *args, tail=tail)
        assert status == 200, (status, body)
        value = body["FCALL"]
        assert isinstance(value, str), body
        return json.loads(value)

    def sync(self, replica, seq, payload, legacy=False):
        """tg_sync as the filter sends it: the payload's JSON line, then the spend records given as
        `payload["spend_logs"]` in blocks by key (`legacy`: left in the payload, as version 7's
        callers send them)."""
        payload = dict(payload)
        records = [] if legacy else payload.pop("spend_logs", [])
        text = json.dumps(payload) + ("\n" + record_blocks(records) if records else "")
        return self.call("tg_sync", replica, seq, tail=text)

    def admit(self, replica, parties, b=0, t=0):
        """parties: a list of {"id", "limits"}, or one of them."""
        return self.call("tg_admit", replica, json.dumps(parties), json.dumps({"b": b, "t": t}))

    def key_put(self, token, record, op="put", expect=None):
        return self.call("tg_key_put", token, json.dumps(record), op, json.dumps(expect))

    def key_get(self, token):
        return self.call("tg_key_get", token)["key"]

    def spend_logs(self, **flt):
        return self.call("tg_spend_logs", json.dumps(flt))

    def redis(self, *args):
        """Inspection and set-up straight over RESP (not the filter's path)."""
        return self.stack.redis.command(*args)

    def party(self, pid):
        flat = self.redis("HGETALL", "tg:p:{%s}" % pid)
        return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}

    def leases(self, pid):
        flat = self.redis("HGETALL", "tg:l:{%s}" % pid)
        return {flat[i]: json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}


@pytest.fixture(scope="module")
def stack():
    with Stack() as s:
        Lib(s).load()
        yield s


@pytest.fixture
def lib(stack):
    # FLUSHALL keeps functions: every test starts from an empty keyspace with the library loaded.
    assert stack.redis.command("FLUSHALL") == "OK"
    return Lib(stack)


def steady_minute(margin=2.0):
    """Waits out the last `margin` seconds of a minute (Redis's clock is this machine's), so that
    a test counting one minute's requests and tokens does not straddle two."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.05)


def party(pid, **limits):
    return {"id": pid, "limits": limits}


def entry(pid, limits, spent=0, tokens=0, release=None, grow=None, m=0):
    """A party of a tg_sync payload, as the engine sends it (`quota::fleet::PartySync`)."""
    return {"id": pid, "limits": limits, "spent": spent, "tokens": tokens, "release": release or {},
            "grow": grow or {}, "m": m}


def amounts(b=0, r=0, t=0, p=0):
    return {"b": b, "r": r, "t": t, "p": p}


def lease(b=0, r=0, t=0, p=0, m=0):
    return {"b": b, "r": r, "t": t, "p": p, "m": m}


# ---------------------------------------------------------------------------------------------
# Loading, version, bad input


def test_every_change_to_the_library_has_a_new_version():
    digest = hashlib.sha256(LIBRARY.encode()).hexdigest()
    assert LIBRARY_SHA256.get(VERSION) == digest, (
        f"src/store/tollgate.lua is not what VERSION {VERSION!r} was: give it a new VERSION and add "
        f"that VERSION with sha256 {digest} to LIBRARY_SHA256")


def test_library_loads_through_webdis_and_reports_its_version(lib):
    assert lib.call("tg_version") == {"version": VERSION}
    # Loading again (what every replica does when the version differs) replaces it in place.
    lib.load()
    # (webdis cannot render FUNCTION LIST's nested maps: ask Redis itself.)
    names = json.dumps(lib.redis("FUNCTION", "LIST", "LIBRARYNAME", "tollgate"))
    for fn in ("tg_sync", "tg_admit", "tg_key_get", "tg_key_put", "tg_spend_logs", "tg_version"):
        assert fn in names


BAD_CALLS = [
    ("tg_sync", ["r1", "1", "garbage"]),
    ("tg_sync", ["r1", "1", "[1,2]"]),
    ("tg_sync", ["r/1", "1", "{}"]),
    ("tg_sync", ["", "1", "{}"]),
    ("tg_sync", ["r1", "-1", "{}"]),
    ("tg_sync", ["r1", "1.5", "{}"]),
    ("tg_sync", ["r1", "x", "{}"]),
    ("tg_sync", ["r1", "1", '{"ttl_ms": 5}']),
    ("tg_sync", ["r1", "1", '{"parties": {"a": 1}}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": ""}]}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p", "spent": -1}]}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p", "spent": 1.5}]}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p", "tokens": "3"}]}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p", "m": -1}]}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p", "grow": {"b": "10"}}]}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p", "grow": [1]}]}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p", "release": {"p": 1.5}}]}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p", "release": 3}]}']),
    # The first draft's absolute targets are refused, not ignored.
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p", "want": {"b": 10}}]}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p", "held": {}}]}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p", "requests": 3}]}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p", "limits": {"rpm": -3}}]}']),
    ("tg_sync", ["r1", "1", '{"parties": [{"id": "p"}, 7]}']),
    ("tg_sync", ["r1", "1", '{"cooldowns": [{"deployment": "d"}]}']),
    ("tg_sync", ["r1", "1", '{"spend_logs": [1]}']),
    ("tg_sync", ["r1", "1", '{"spend_logs": [{"key_hash": 5}]}']),
    ("tg_sync", ["r1", "1", '{"spend_logs": [{"api_key": 5}]}']),
    ("tg_sync", ["r1", "1", '{"changes_after": "soon"}']),
    ("tg_sync", ["r1", "1", '{"seed": {"keys": [{"key_alias": "no token"}]}}']),
    ("tg_sync", ["r1", "1", '{"seed": {"teams": [{}]}}']),
    ("tg_sync", ["r1", "1", json.dumps({"parties": [{"id": "p"}] * 1025})]),
    ("tg_sync", ["r1", "1", json.dumps({"spend_logs": [{}] * 4097})]),
    ("tg_sync", ["r1", "1", "{}\n" + "- 2 5\n{}\n{}\n" * 2049]),
    # Records both in the payload (version 7) and after it.
    ("tg_sync", ["r1", "1", '{"spend_logs": [{}]}\n- 1 2\n{}\n']),
    ("tg_sync", ["r1", "1", "not json\n- 1 2\n{}\n"]),
    ("tg_sync", ["r1", "1", json.dumps({"seed": {"keys": [{"token": KEY}] * 600, "teams": [{"team_id": "t"}] * 401}})]),
    ("tg_sync", ["r1"]),
    ("tg_admit", ["r1", "{}", '{"b": 1}']),
    ("tg_admit", ["r1", "[]", '{"b": 1}']),
    ("tg_admit", ["r1", '"p"', '{"b": 1}']),
    ("tg_admit", ["r1", '[{"id": "p"}, {"id": ""}]', '{"b": 1}']),
    ("tg_admit", ["r1", '[{"id": "p"}, {"id": "p"}]', '{"b": 1}']),
    ("tg_admit", ["r1", '[{"id": "p"}, {"id": "q", "limits": {"rpm": -1}}]', '{"b": 1}']),
    ("tg_admit", ["r1", json.dumps([{"id": f"p{i}"} for i in range(17)]), '{"b": 1}']),
    ("tg_admit", ["r1", '{"id": "p"}', "nope"]),
    ("tg_admit", ["r1", '{"id": "p"}', '{"b": -1}']),
    ("tg_admit", ["r1", '{"id": "p", "limits": 3}', '{"b": 1}']),
    ("tg_admit", ["", '{"id": "p"}', '{"b": 1}']),
    ("tg_key_get", ["not a token"]),
    ("tg_key_get", []),
    ("tg_key_put", [KEY, "{}", "burn", "null"]),
    ("tg_key_put", [KEY, "[]", "put", "null"]),
    ("tg_key_put", [KEY, "[]", "delete", "null"]),
    ("tg_key_put", [KEY, "{}", "put", "[]"]),
    ("tg_admit", ["r1", '{"id": "p"}', "[]"]),
    ("tg_admit", ["r1", '{"id": "p", "have": -1}', '{"b": 1}']),
    ("tg_admit", ["r1", '{"id": "p", "have": 1.5}', '{"b": 2}']),
    ("tg_admit", ["r1", '{"id": "p", "have": 2}', '{"b": 1}']),
    ("tg_admit", ["r1", '{"id": "p", "extra": {"r": -1}}', '{"b": 1}']),
    ("tg_admit", ["r1", '{"id": "p", "extra": 5}', '{"b": 1}']),
    ("tg_sync", ["r1", "1", "[]"]),
    ("tg_key_put", [KEY, "null", "put", "null"]),
    ("tg_key_put", [KEY, "{}", "put", "[1]"]),
    ("tg_key_put", [KEY, '{"key_alias": 7}', "put", "null"]),
    ("tg_key_put", [KEY, "{}", "put", '{"absent": "yes"}']),
    ("tg_key_put", ["", "{}", "put", "null"]),
    ("tg_spend_logs", ["[]"]),
    ("tg_spend_logs", ['"str"']),
    ("tg_spend_logs", ['{"limit": -1}']),
    ("tg_spend_logs", ['{"api_key": 5}']),
    ("tg_spend_logs", ['{"after": "x"}']),
]


def test_bad_input_is_an_error_document_and_writes_nothing(lib):
    for function, args in BAD_CALLS:
        out = lib.call(function, *args)
        assert set(out) == {"error"} and out["error"], (function, args, out)
    assert lib.redis("DBSIZE") == 0
    # The errors say what is wrong.
    out = lib.sync("r1", 1, {"parties": [{"id": "p", "want": {"b": 10}}]})
    assert out["error"].startswith("parties[1].want is not accepted")
    out = lib.call("tg_admit", "r1", '[{"id": "p"}, {"id": "p"}]', "{}")
    assert out["error"] == "parties[2].id repeats parties[1]"
    # And the library still works afterwards.
    assert lib.sync("r1", 1, {})["seq"] == 1


def test_a_party_error_after_valid_parties_writes_nothing(lib):
    limits = {"max_budget": 100}
    out = lib.sync("r1", 1, {"parties": [entry("p1", limits, grow={"b": 10}), {"id": "p2", "spent": "x"}],
                             "spend_logs": [{"key_hash": KEY, "cost": 1}]})
    assert "error" in out and "parties[2]" in out["error"]
    assert lib.redis("DBSIZE") == 0


# ---------------------------------------------------------------------------------------------
# tg_sync: grants, releases, budget, exactly once


def test_sync_grants_only_what_is_left_and_the_replica_adds_it(lib):
    limits = {"max_budget": 1000}
    a = lib.sync("ra", 1, {"parties": [entry("p", limits, grow={"b": 700})]})
    assert a["seq"] == 1 and a["dead"] == [] and a["changes"] == [] and a["cooldowns"] == []
    pa = a["parties"][0]
    # Amounts granted, never the lease itself.
    assert set(pa) == PARTY_FIELDS | {"granted", "m", "reset"}
    assert pa["granted"] == amounts(b=700) and pa["leased"] == 700
    assert pa["reset"] is False and pa["replicas"] == 1 and pa["m"] == a["now_ms"] // 60_000
    b = lib.sync("rb", 1, {"parties": [entry("p", limits, grow={"b": 700})]})
    pb = b["parties"][0]
    assert pb["granted"] == amounts(b=300) and pb["replicas"] == 2  # only what is left
    # Grants add to the lease: ra asks for more and gets nothing; its lease is still 700.
    a = lib.sync("ra", 2, {"parties": [entry("p", limits, grow={"b": 100})]})
    assert a["parties"][0]["granted"] == amounts()
    assert lib.leases("p")["ra"]["b"] == 700
    # ra spent 200 and releases 100 of what it no longer needs: its lease is 400.
    a = lib.sync("ra", 3, {"parties": [entry("p", limits, spent=200, release={"b": 100})]})
    pa = a["parties"][0]
    assert pa["spend"] == 200 and pa["lifetime"] == 200 and pa["leased"] == 700
    assert pa["spend"] + pa["leased"] == 900 and lib.leases("p")["ra"]["b"] == 400
    # A request cost more than its estimate: ra reports 450 spent on a lease of 400. The lease
    # is empty (not negative); the 50 beyond it is the overshoot; 50 are left to grant.
    a = lib.sync("ra", 4, {"parties": [entry("p", limits, spent=450, grow={"b": 100})]})
    pa = a["parties"][0]
    assert pa["spend"] == 650 and pa["granted"] == amounts(b=50) and pa["leased"] == 350
    assert lib.leases("p")["ra"]["b"] == 50
    # rb releases everything: what is left goes to whoever asks.
    lib.sync("rb", 2, {"parties": [entry("p", limits, release={"b": 300})]})
    a = lib.sync("ra", 5, {"parties": [entry("p", limits, grow={"b": 1000})]})
    pa = a["parties"][0]
    assert pa["granted"] == amounts(b=300) and pa["spend"] + pa["leased"] == 1000
    # A release beyond the lease takes it to nothing, never below.
    a = lib.sync("ra", 6, {"parties": [entry("p", limits, spent=300, release={"b": 10_000})]})
    pa = a["parties"][0]
    assert pa["spend"] == 950 and pa["leased"] == 0
    assert lib.party("p")["spend"] == 950 and lib.leases("p") == {}


def test_unlimited_parties_get_all_they_ask_and_releasing_everything_forgets_the_lease(lib):
    out = lib.sync("ra", 1, {"parties": [entry("p", {}, grow=amounts(5, 6, 7, 8), spent=9)]})
    p = out["parties"][0]
    assert p["granted"] == amounts(5, 6, 7, 8)
    assert lib.leases("p") == {"ra": lease(5, 6, 7, 8, p["m"])}
    assert lib.redis("SMEMBERS", "tg:r:{ra}") == ["p"]
    lib.sync("ra", 2, {"parties": [entry("p", {}, release=amounts(5, 6, 7, 8), tokens=7, m=p["m"])]})
    assert lib.leases("p") == {} and lib.redis("EXISTS", "tg:r:{ra}") == 0
    assert lib.party("p")["lifetime"] == 9


def test_sync_applies_once_per_seq_and_returns_the_stored_reply(lib):
    limits = {"max_budget": 10_000}
    payload = {"parties": [entry("p", limits, spent=10, grow={"b": 50})],
               "spend_logs": [{"key_hash": KEY, "cost": 10, "request_id": "r-1"}]}
    first = lib.sync("ra", 7, payload)
    assert first["parties"][0]["granted"] == amounts(b=50)
    # A lost reply: the replica sends the same seq and payload again, gets the same reply, and
    # applies it once. The store granted once and took the spend once.
    again = lib.sync("ra", 7, payload)
    assert again == first
    lower = lib.sync("ra", 3, {"parties": [entry("p", limits, spent=999, grow={"b": 999})]})
    assert lower == first
    assert lib.party("p")["spend"] == 10 and lib.leases("p")["ra"]["b"] == 50
    assert len(lib.spend_logs()["logs"]) == 1
    nxt = lib.sync("ra", 8, payload)
    assert nxt["seq"] == 8 and nxt["parties"][0]["spend"] == 20
    assert lib.leases("p")["ra"]["b"] == 50 - 10 + 50


def test_replies_carry_integers_exactly_and_empty_lists_as_lists(lib):
    # cjson.encode would write 123456789012345 as 1.2345678901234e+14 and [] as {}.
    big = 123_456_789_012_345
    out = lib.sync("ra", 1, {"parties": [entry("p", {}, spent=big)]})
    assert out["parties"][0]["spend"] == big and out["parties"][0]["lifetime"] == big
    assert out["dead"] == [] and out["changes"] == [] and out["cooldowns"] == []
    assert lib.sync("rb", 1, {})["parties"] == []


class EngineReplica:
    """A replica's ledger for one party as the engine keeps it (`quota::fleet::Ledger`, budget
    only): a lease it adds grants to, requests in flight, spend settled and not acknowledged, and
    at most one sync on its way (built, sent, its reply applied once)."""

    def __init__(self, lib, name, pid, limits):
        self.lib, self.name, self.pid, self.limits = lib, name, pid, limits
        self.seq = 0
        self.lease = 0  # budget the replica believes it holds (grants, less releases and acked spend)
        self.inflight = []  # estimates of requests admitted and not settled
        self.unsynced = 0  # settled, not acknowledged
        self.sync = None  # {"seq", "payload", "spent", "release", "reply"}
        self.settled = self.acked = self.refused = 0
        # Requests and slots tg_admit granted with the budget (no limit: bookkeeping), and the
        # store's minute they count in; returned by the last sync.
        self.requests = self.slots = self.minute = 0

    def committed(self):
        return sum(self.inflight) + self.unsynced

    def admit(self, est):
        if self.lease - self.committed() >= est:
            self.inflight.append(est)
            return None
        out = self.lib.admit(self.name, party(self.pid, **self.limits), b=est)
        if out["ok"]:
            assert out["parties"][0]["granted"] == amounts(b=est, r=1, p=1)
            self.lease += est
            self.inflight.append(est)
            if out["m"] != self.minute:
                self.minute, self.requests = out["m"], 0
            self.requests += 1
            self.slots += 1
        else:
            assert out["refusal"]["kind"] == "budget" and out["party"] == 0
            self.refused += 1
        return out["parties"][0]

    def settle(self, i, cost):
        assert cost <= self.inflight[i]  # requests cost at most their estimate
        self.inflight.pop(i)
        self.unsynced += cost
        self.settled += cost

    def build(self, room, last=False):
        """Freezes the spend, releases locally what it does not need beyond `room`, asks to grow
        to it otherwise. The last sync also returns the requests and slots."""
        assert self.sync is None
        desired = self.committed() + room
        release, grow = max(0, self.lease - desired), max(0, desired - self.lease)
        self.lease -= release
        others = {}
        if last:
            others = {"r": self.requests, "p": self.slots}
            self.requests = self.slots = 0
        self.seq += 1
        self.sync = {"seq": self.seq, "spent": self.unsynced, "release": release, "reply": None,
                     "payload": {"ttl_ms": 60_000, "parties": [
                         entry(self.pid, self.limits, spent=self.unsynced, release={"b": release, **others},
                               grow={"b": grow}, m=self.minute)]}}

    def send(self, resend=False):
        s = self.sync
        s["reply"] = self.lib.sync(self.name, s["seq"], s["payload"])
        if resend:
            assert self.lib.sync(self.name, s["seq"], s["payload"]) == s["reply"]
        return s["reply"]["parties"][0]

    def apply(self):
        s, self.sync = self.sync, None
        p = s["reply"]["parties"][0]
        assert p["reset"] is False
        self.lease += p["granted"]["b"] - s["spent"]
        self.unsynced -= s["spent"]
        self.acked += s["spent"]

    def store_lease(self):
        """What Redis must hold for this replica, from its own bookkeeping alone."""
        s = self.sync
        if s is None:
            return self.lease
        if s["reply"] is None:
            return self.lease + s["release"]  # released here, not yet there
        return self.lease - s["spent"] + s["reply"]["parties"][0]["granted"]["b"]

    def applied_spend(self):
        """Spend the store has taken from this replica."""
        s = self.sync
        return self.acked + (s["spent"] if s and s["reply"] else 0)


def test_budget_holds_across_interleaved_replicas(lib):
    """4 replicas interleaved at random (seeded), each keeping its lease as the engine does: it
    admits locally against it, asks tg_admit when it cannot hold a request and adds the grant,
    settles (cost at most the estimate), releases locally before a sync leaves, and applies each
    reply once. Syncs wait between being built, sent and applied while the replica admits (also
    through tg_admit), so grants and syncs cross; some are sent twice (a lost reply). After every
    step: spend + leased <= max_budget, the stored spend is exactly the sum of the `spent` the
    store has applied, and Redis holds for each replica exactly the lease its bookkeeping says
    (which covers what it has committed)."""
    pid, max_budget = "key:%s:g1" % KEY, 150_000
    limits = {"max_budget": max_budget}
    rnd = random.Random(14)
    replicas = [EngineReplica(lib, f"r{i}", pid, limits) for i in range(4)]
    # Each replica's first tick: its heartbeat (60 s: none dies during the test).
    for r in replicas:
        r.build(0)
        r.send()
        r.apply()

    def check(reply_party=None):
        if reply_party is not None:
            assert reply_party["spend"] + reply_party["leased"] <= max_budget, reply_party
        stored, leases = lib.party(pid), lib.leases(pid)
        assert stored.get("spend", 0) + stored.get("leased", 0) <= max_budget, stored
        assert stored.get("spend", 0) == sum(r.applied_spend() for r in replicas), stored
        assert stored.get("leased", 0) == sum(x["b"] for x in leases.values())
        for r in replicas:
            assert leases.get(r.name, {"b": 0})["b"] == r.store_lease(), (r.name, leases, vars(r))
            assert r.committed() <= r.lease

    crossed = 0  # grants of tg_admit while the replica's sync was built or on its way
    for _ in range(600):
        r = rnd.choice(replicas)
        action = rnd.random()
        out = None
        if action < 0.45:
            out = r.admit(rnd.randint(500, 5_000))
            crossed += out is not None and out.get("granted") is not None and r.sync is not None
        elif action < 0.75:
            if r.inflight:
                i = rnd.randrange(len(r.inflight))
                r.settle(i, rnd.randint(0, r.inflight[i]))
        elif r.sync is None:
            r.build(rnd.choice([0, 1_000, 20_000, 60_000]))
        elif r.sync["reply"] is None:
            out = r.send(resend=rnd.random() < 0.2)
        else:
            r.apply()
        check(out)

    # Drain: everything settles, every sync is applied, and a last one releases everything.
    for r in replicas:
        while r.inflight:
            r.settle(0, r.inflight[0])
        if r.sync is not None:
            if r.sync["reply"] is None:
                r.send()
            r.apply()
        r.build(0, last=True)
        check(r.send(resend=True))
        r.apply()
        check()
        assert r.acked == r.settled and r.lease == 0
    stored = lib.party(pid)
    assert stored["spend"] == sum(r.settled for r in replicas) == stored["lifetime"]
    assert stored["spend"] <= max_budget
    assert stored["leased"] == 0 and lib.leases(pid) == {}
    # The budget was actually the limit: some requests were refused, most of it was spent.
    assert sum(r.refused for r in replicas) > 0 and stored["spend"] > max_budget * 3 // 4
    assert crossed >= 10, crossed


def test_a_sync_built_before_an_admit_does_not_take_the_grant_back(lib):
    """The hazard of absolute leases: a sync built while the replica held nothing, applied after
    tg_admit granted a request, must not shrink the lease under that request."""
    steady_minute()
    limits = {"max_budget": 1000, "rpm": 10, "parallel": 2}
    out = lib.sync("ra", 1, {"parties": [entry("p", limits, grow={"b": 500, "r": 5, "p": 1})]})
    m = out["parties"][0]["m"]
    local = out["parties"][0]["granted"]
    assert local == amounts(b=500, r=5, p=1)
    # ra is idle: it builds a sync releasing all of its lease (it holds nothing), locally first.
    payload = {"parties": [entry("p", limits, release=local, m=m)]}
    local = amounts()
    # Before that sync leaves, a request arrives: the lease cannot hold it, tg_admit grants it.
    out = lib.admit("ra", [party("p", **limits)], b=300, t=0)
    assert out["ok"] and out["parties"][0]["granted"] == amounts(b=300, r=1, p=1)
    local = amounts(b=300, r=1, p=1)
    # The sync arrives after the grant: it returns what it released, and nothing of the grant.
    out = lib.sync("ra", 2, payload)
    p = out["parties"][0]
    assert p["granted"] == amounts()
    assert (p["leased"], p["requests"], p["leased_parallel"]) == (300, 1, 1)
    assert lib.leases("p") == {"ra": lease(**local, m=m)}
    # So what the admitted request holds is not leased twice: another replica gets what is left.
    out = lib.sync("rb", 1, {"parties": [entry("p", limits, grow={"b": 1000, "r": 10, "p": 2}, m=m)]})
    p = out["parties"][0]
    assert p["granted"] == amounts(b=700, r=9, p=1)
    assert p["spend"] + p["leased"] == 1000 and p["requests"] == 10 and p["leased_parallel"] == 2


# ---------------------------------------------------------------------------------------------
# tg_admit, rpm / tpm / parallel across replicas


def test_requests_tokens_and_slots_are_global(lib):
    steady_minute()
    limits = {"rpm": 30, "tpm": 1000, "parallel": 4}
    grow = {"r": 20, "t": 600, "p": 3}
    a, b, c = (lib.sync(r, 1, {"parties": [entry("p", limits, grow=grow)]})["parties"][0] for r in ("ra", "rb", "rc"))
    assert (a["granted"], b["granted"], c["granted"]) == (amounts(0, 20, 600, 3), amounts(0, 10, 400, 1), amounts())
    assert (c["requests"], c["tokens"], c["leased_parallel"]) == (30, 1000, 4)
    m = c["m"]
    out = lib.admit("rc", party("p", **limits), t=1)
    assert not out["ok"] and out["party"] == 0 and out["m"] == m
    assert out["refusal"] == {"kind": "parallel", "limit": 4, "used": 4, "reset_s": None}
    assert [set(x) for x in out["parties"]] == [PARTY_FIELDS]
    assert "rc" not in lib.leases("p")
    # ra releases the two slots it does not use.
    lib.sync("ra", 2, {"parties": [entry("p", limits, release={"p": 2}, m=m)]})
    assert lib.leases("p")["ra"]["p"] == 1
    out = lib.admit("rc", party("p", **limits), t=1)
    assert not out["ok"] and out["refusal"]["kind"] == "requests" and out["refusal"]["used"] == 30
    assert 0 < out["refusal"]["reset_s"] <= 60
    # ra releases 10 requests and 300 tokens of this minute's allowance: rc can take them.
    lib.sync("ra", 3, {"parties": [entry("p", limits, release={"r": 10, "t": 300}, m=m)]})
    out = lib.admit("rc", party("p", **limits), t=301)
    assert not out["ok"] and out["refusal"]["kind"] == "tokens" and out["refusal"]["used"] == 700
    out = lib.admit("rc", party("p", **limits), t=300)
    assert out["ok"] and out["parties"][0]["granted"] == amounts(0, 1, 300, 1)
    p = out["parties"][0]
    assert (p["requests"], p["tokens"], p["leased_parallel"]) == (21, 1000, 3)
    assert lib.leases("p")["rc"] == lease(0, 1, 300, 1, m)
    # A release of another minute's allowance (the replica's clock is behind) counts for nothing.
    out = lib.sync("rb", 2, {"parties": [entry("p", limits, release={"r": 5}, m=m - 1)]})
    assert out["parties"][0]["requests"] == 21 and lib.leases("p")["rb"]["r"] == 10
    # Grants are capped by what is left of the minute; tokens reported settled do not count (the
    # lease is the count).
    out = lib.sync("rb", 3, {"parties": [entry("p", limits, tokens=500, grow={"r": 20, "t": 5}, m=m)]})
    p = out["parties"][0]
    assert p["granted"] == amounts(r=9) and p["requests"] == 30 and p["tokens"] == 1000


def test_a_new_minute_starts_fresh(lib):
    steady_minute()
    limits = {"rpm": 10, "tpm": 100}
    out = lib.sync("ra", 1, {"parties": [entry("p", limits, grow={"r": 10, "t": 100, "b": 5})]})
    minute = out["parties"][0]["m"]
    assert not lib.admit("rb", party("p", **limits))["ok"]
    # Redis's clock moves to the next minute (simulated: the stored counters are a minute old).
    key = "tg:p:{p}"
    lib.redis("HSET", key, "minute", minute - 1)
    old = lib.leases("p")["ra"]
    lib.redis("HSET", "tg:l:{p}", "ra", json.dumps({**old, "m": minute - 1}))
    out = lib.admit("rb", party("p", **limits), t=40)
    assert out["ok"] and out["m"] == minute
    assert out["parties"][0]["requests"] == 1 and out["parties"][0]["tokens"] == 40
    # ra's allowance lapsed with its minute: a release of it counts for nothing here, and what is
    # granted is of the new minute.
    out = lib.sync("ra", 2, {"parties": [entry("p", limits, release={"r": 3, "t": 30}, grow={"r": 5, "t": 50, "b": 5},
                                               m=minute)]})
    p = out["parties"][0]
    assert p["granted"] == amounts(b=5, r=5, t=50) and p["m"] == minute
    assert p["requests"] == 1 + 5 and p["tokens"] == 40 + 50
    assert lib.leases("p")["ra"] == lease(10, 5, 50, 0, minute)


def test_admit_grows_the_lease_by_exactly_the_request_and_refuses_over_budget(lib):
    limits = {"max_budget": 1000, "duration": 3600}
    lib.sync("ra", 1, {"parties": [entry("p", limits, grow={"b": 600})]})
    out = lib.admit("rb", [party("p", **limits)], b=400, t=10)
    assert out["ok"] and set(out) == {"ok", "now_ms", "m", "parties"}
    p = out["parties"][0]
    assert set(p) == PARTY_FIELDS | {"granted"} and p["id"] == "p"
    assert p["granted"] == amounts(400, 1, 10, 1) and p["leased"] == 1000
    assert lib.leases("p")["rb"] == lease(400, 1, 10, 1, out["m"])
    out = lib.admit("rb", [party("p", **limits)], b=1)
    assert not out["ok"] and set(out) == {"ok", "now_ms", "m", "party", "refusal", "parties"}
    assert out["party"] == 0 and out["refusal"]["kind"] == "budget"
    assert out["refusal"]["used"] == 1000 and out["refusal"]["limit"] == 1000
    assert 0 < out["refusal"]["reset_s"] <= 3600
    assert [set(x) for x in out["parties"]] == [PARTY_FIELDS]
    # A replica that never synced got a heartbeat with its lease, so its death is noticed.
    assert lib.redis("ZSCORE", "tg:replicas", "rb") is not None
    # Spent budget refuses even a free request.
    lib.sync("ra", 2, {"parties": [entry("p", limits, spent=600)]})
    lib.sync("rb", 1, {"parties": [entry("p", limits, spent=400)]})
    out = lib.admit("rc", party("p", **limits), b=0)
    assert not out["ok"] and out["parties"][0]["spend"] == 1000 and out["parties"][0]["leased"] == 0


def test_admit_needs_from_the_pool_only_what_the_lease_does_not_hold(lib):
    """A replica whose lease holds a fragment too small for a request offers it (`have`): the
    store checks and grants only the rest, so the fragment is not stranded beside the request."""
    limits = {"max_budget": 1000}
    lib.sync("ra", 1, {"parties": [entry("p", limits, grow={"b": 930})]})
    # 70 left in the pool: a request of 100 fits only with 30 of ra's lease.
    assert not lib.admit("ra", [party("p", **limits)], b=100)["ok"]
    out = lib.admit("ra", [{**party("p", **limits), "have": 30}], b=100, t=5)
    assert out["ok"], out
    assert out["parties"][0]["granted"] == amounts(70, 1, 5, 1) and out["parties"][0]["leased"] == 1000
    assert lib.leases("p")["ra"]["b"] == 1000
    out = lib.admit("ra", [{**party("p", **limits), "have": 100}], b=100)
    assert out["ok"] and out["parties"][0]["granted"]["b"] == 0


def test_admit_grants_extra_lease_within_the_limits(lib):
    """A request that asks may ask for lease on top (`extra`), for the requests after it: granted
    as far as each limited dimension has room, nothing for unlimited ones."""
    limits = {"max_budget": 1000, "rpm": 10}
    out = lib.admit("ra", [{**party("p", **limits), "extra": {"b": 300, "r": 4, "t": 99}}], b=100, t=5)
    assert out["ok"], out
    assert out["parties"][0]["granted"] == amounts(400, 5, 5, 1)
    assert out["parties"][0]["leased"] == 400 and out["parties"][0]["requests"] == 5
    assert lib.leases("p")["ra"] == lease(400, 5, 5, 1, out["m"])
    # Only what is left: 600 of budget, 5 requests.
    out = lib.admit("rb", [{**party("p", **limits), "extra": {"b": 10_000, "r": 100}}], b=100)
    assert out["ok"] and out["parties"][0]["granted"] == amounts(600, 5, 0, 1), out
    assert out["parties"][0]["leased"] == 1000 and out["parties"][0]["requests"] == 10
    assert not lib.admit("rc", [party("p", **limits)], b=1)["ok"]


def test_admit_is_all_or_none_across_parties(lib):
    steady_minute()
    key, team = "key:%s:g1" % KEY, "team:t1"
    kl, tl = {"max_budget": 1000, "rpm": 100}, {"parallel": 1}
    both = [party(key, **kl), party(team, **tl)]
    out = lib.admit("ra", both, b=100, t=5)
    assert out["ok"] and [p["id"] for p in out["parties"]] == [key, team]
    assert all(p["granted"] == amounts(100, 1, 5, 1) for p in out["parties"])
    m = out["m"]
    assert lib.leases(key) == {"ra": lease(100, 1, 5, 1, m)} and lib.leases(team) == {"ra": lease(100, 1, 5, 1, m)}

    def state():
        return [lib.party(key), lib.leases(key), lib.party(team), lib.leases(team),
                lib.redis("ZSCORE", "tg:replicas", "rb"), lib.redis("EXISTS", "tg:r:{rb}")]

    before = state()
    # The team has no slot left: the key's party had room, and nothing is written for it either.
    out = lib.admit("rb", both, b=100, t=5)
    assert not out["ok"] and out["party"] == 1
    assert out["refusal"] == {"kind": "parallel", "limit": 1, "used": 1, "reset_s": None}
    assert [p["id"] for p in out["parties"]] == [key, team]
    assert [set(p) for p in out["parties"]] == [PARTY_FIELDS, PARTY_FIELDS]
    assert out["parties"][0]["leased"] == 100 and out["parties"][0]["requests"] == 1
    assert state() == before and before[4] is None and before[5] == 0
    # ra's request is over: it gives the team's slot back. Now the key refuses (budget): index 0.
    lib.sync("ra", 1, {"parties": [entry(team, tl, release={"p": 1})]})
    before = state()
    out = lib.admit("rb", both, b=901)
    assert not out["ok"] and out["party"] == 0 and out["refusal"]["kind"] == "budget"
    assert out["refusal"]["used"] == 100
    assert out["parties"][1]["leased_parallel"] == 0
    assert state() == before
    # Room in both: both leases grow by exactly the request.
    out = lib.admit("rb", both, b=900)
    assert out["ok"] and [p["granted"]["b"] for p in out["parties"]] == [900, 900]
    assert lib.leases(key)["rb"]["b"] == 900 and lib.leases(team)["rb"]["p"] == 1


# ---------------------------------------------------------------------------------------------
# Dead replicas, windows


def test_dead_replicas_leases_return_to_the_pool(lib):
    steady_minute(3.0)
    limits = {"max_budget": 1000, "rpm": 100, "parallel": 5}
    lib.sync("ra", 1, {"ttl_ms": 800, "parties": [entry("p", limits, grow={"b": 800, "r": 40, "p": 4})]})
    out = lib.admit("ra", party("p", **limits), b=100)
    assert out["ok"] and out["parties"][0]["leased"] == 900 and out["parties"][0]["leased_parallel"] == 5
    out = lib.sync("rb", 1, {"ttl_ms": 800, "parties": [entry("p", limits, grow={"b": 800, "p": 4})]})
    p = out["parties"][0]
    assert out["dead"] == [] and p["granted"] == amounts(b=100) and p["replicas"] == 2
    time.sleep(0.9)
    out = lib.sync("rb", 2, {"ttl_ms": 800, "parties": [entry("p", limits, grow={"b": 600, "p": 4})]})
    assert out["dead"] == ["ra"] and out["reclaimed"] is False
    p = out["parties"][0]
    assert p["granted"] == amounts(b=600, p=4) and p["leased"] == 700 and p["leased_parallel"] == 4
    assert p["replicas"] == 1 and p["reset"] is False
    # Its request allowance stays counted until the minute ends (it may have used it).
    assert p["requests"] == 41
    assert set(lib.leases("p")) == {"rb"}
    assert lib.redis("EXISTS", "tg:r:{ra}") == 0
    assert lib.redis("ZSCORE", "tg:replicas", "ra") is None
    # Reclaimed once: the next call reports nobody.
    assert lib.sync("rb", 3, {"ttl_ms": 800})["dead"] == []
    # ra was only partitioned: it comes back and is told `reset` (its old lease is gone: what it
    # releases of it counts for nothing), and asks for what it holds in flight.
    out = lib.sync("ra", 2, {"ttl_ms": 800, "parties": [entry("p", limits, spent=50, release={"b": 200},
                                                               grow={"b": 70, "p": 1})]})
    assert out["reclaimed"] is True
    p = out["parties"][0]
    assert p["reset"] is True and p["granted"] == amounts(b=70, p=1) and p["spend"] == 50
    assert p["leased"] == 770 and lib.leases("p")["ra"] == lease(b=70, p=1, m=p["m"])
    # Told once.
    out = lib.sync("ra", 3, {"ttl_ms": 800, "parties": [entry("p", limits)]})
    assert out["reclaimed"] is False and out["parties"][0]["reset"] is False
    # A retry of a seq applied before its death is still recognised (tg:seq outlives it).
    assert lib.sync("ra", 1, {})["seq"] == 3


def test_a_reclaimed_replica_is_told_reset_even_after_an_admit(lib):
    limits = {"max_budget": 1000}
    lib.sync("ra", 1, {"ttl_ms": 100, "parties": [entry("p", limits, grow={"b": 600})]})
    # rc never synced: only tg_admit gave it a lease (and a heartbeat, expired here at once).
    assert lib.admit("rc", party("p", **limits), b=50)["ok"]
    lib.redis("ZADD", "tg:replicas", 0, "rc")
    time.sleep(0.15)
    assert sorted(lib.sync("rb", 1, {})["dead"]) == ["ra", "rc"]
    assert lib.party("p")["leased"] == 0
    # ra's first call after its reclaim is a tg_admit: it has a heartbeat again, yet its next
    # sync must still say that its old lease is gone (the admit's grant is all it holds).
    assert lib.admit("ra", party("p", **limits), b=100)["ok"]
    out = lib.sync("ra", 2, {"parties": [entry("p", limits)]})
    assert out["reclaimed"] is True and out["parties"][0]["reset"] is True
    assert lib.leases("p")["ra"]["b"] == 100
    assert lib.sync("ra", 3, {"parties": [entry("p", limits)]})["parties"][0]["reset"] is False
    # rc's first sync is told too.
    out = lib.sync("rc", 1, {"parties": [entry("p", limits)]})
    assert out["reclaimed"] is True and out["parties"][0]["reset"] is True


def test_reclaim_is_bounded_per_call(lib):
    # A dead replica holding 1500 leases is reclaimed over two calls of 1024 at most.
    for seq in (1, 2):
        lib.sync("ra", seq, {"ttl_ms": 100, "parties": [
            entry(f"p{i}", {"parallel": 1}, grow={"p": 1}) for i in range(750 * (seq - 1), 750 * seq)]})
    time.sleep(0.15)
    first = lib.sync("rb", 1, {})
    assert first["dead"] == [] and lib.redis("SCARD", "tg:r:{ra}") == 1500 - 1024
    # Marked already: were it to come back now, it would be told `reset`.
    assert lib.redis("HGET", "tg:seq:{ra}", "reclaimed") == "1"
    second = lib.sync("rb", 2, {})
    assert second["dead"] == ["ra"]
    assert all(lib.party(f"p{i}")["leased_parallel"] == 0 for i in range(0, 1500, 97))


def test_budget_windows_roll_on_redis_clock(lib):
    limits = {"max_budget": 100, "duration": 1}
    # Start early in a second (Redis's clock is this machine's): the first window lasts long
    # enough for the refusal below.
    time.sleep(1.05 - time.time() % 1 if time.time() % 1 > 0.5 else 0)
    out = lib.sync("ra", 1, {"parties": [entry("p", limits, spent=100, grow={"b": 10})]})
    p = out["parties"][0]
    start = p["window_start"]
    assert p["spend"] == 100 and p["granted"]["b"] == 0
    assert not lib.admit("ra", party("p", **limits), b=1)["ok"]
    # Sleep into the next window (windows are aligned to the first one).
    time.sleep(max(0.0, start + 1 - time.time()) + 0.1)
    out = lib.sync("ra", 2, {"parties": [entry("p", limits, spent=7, grow={"b": 10})]})
    p = out["parties"][0]
    assert p["spend"] == 7 and p["lifetime"] == 107 and p["granted"]["b"] == 10
    assert p["window_start"] > start and (p["window_start"] - start) % 1 == 0
    assert lib.admit("ra", party("p", **limits), b=83)["ok"]


# ---------------------------------------------------------------------------------------------
# Cooldowns


def test_cooldowns_reach_every_replica_and_expire(lib):
    now_ms = lib.sync("ra", 1, {})["now_ms"]
    lib.sync("ra", 2, {"cooldowns": [{"deployment": "gpt.0", "until_ms": now_ms + 60_000},
                                     {"deployment": "gpt.1", "until_ms": now_ms + 800},
                                     {"deployment": "old", "until_ms": now_ms - 1}]})
    out = lib.sync("rb", 1, {"cooldowns": [{"deployment": "gpt.0", "until_ms": now_ms + 1_000}]})
    assert {c["deployment"]: c["until_ms"] for c in out["cooldowns"]} == {
        "gpt.0": now_ms + 60_000, "gpt.1": now_ms + 800}
    time.sleep(max(0.0, (now_ms + 850) / 1000 - time.time()))
    assert [c["deployment"] for c in lib.sync("rb", 2, {})["cooldowns"]] == ["gpt.0"]


# ---------------------------------------------------------------------------------------------
# Keys: seeding, aliases, the change log


def test_seeding_twice_clobbers_no_record_and_no_spend(lib):
    # The record is stored byte for byte: [] stays [], a big number keeps its digits.
    record = '{"token": "%s", "key_alias": "cfg", "models": [], "metadata": {}, "created_at": 1790000000123456}' % KEY
    seed = '{"keys": [%s], "teams": [{"team_id": "t1", "models": []}]}' % record
    payload = '{"parties": [%s], "seed": %s}' % (json.dumps(entry("key:%s:cfg" % KEY, {}, spent=500)), seed)
    assert lib.call("tg_sync", "ra", 1, payload)["seq"] == 1
    assert lib.redis("HGET", "tg:k:" + KEY, "record") == record
    assert lib.redis("GET", "tg:t:t1") == '{"team_id": "t1", "models": []}'
    assert lib.key_get(KEY)["models"] == [] and lib.key_get(KEY)["created_at"] == 1790000000123456
    # The admin API changes the key; a replica restarts with the old config and seeds again.
    assert lib.key_put(KEY, {"token": KEY, "key_alias": "cfg", "blocked": True}, op="block")["ok"]
    seed2 = {"keys": [{"token": KEY, "key_alias": "other", "models": ["x"]}], "teams": [{"team_id": "t1", "x": 1}]}
    lib.sync("rb", 1, {"seed": seed2, "parties": [entry("key:%s:cfg" % KEY, {})]})
    assert lib.key_get(KEY) == {"token": KEY, "key_alias": "cfg", "blocked": True}
    assert lib.redis("GET", "tg:t:t1") == '{"team_id": "t1", "models": []}'
    assert lib.redis("GET", "tg:alias:other") is None
    assert lib.party("key:%s:cfg" % KEY)["spend"] == 500
    # A seeded key whose alias another key holds is still seeded, without the alias.
    other = "b" * 64
    lib.sync("rc", 1, {"seed": {"keys": [{"token": other, "key_alias": "cfg"}]}})
    assert lib.key_get(other) == {"token": other, "key_alias": "cfg"}
    assert lib.redis("GET", "tg:alias:cfg") == KEY


def test_key_put_get_delete_and_alias_uniqueness(lib):
    k1, k2 = "1" * 64, "2" * 64
    assert lib.key_get(k1) is None
    assert lib.key_put(k1, {"token": k1, "key_alias": "team-a", "models": []}, expect={"absent": True})["ok"]
    assert lib.key_get(k1) == {"token": k1, "key_alias": "team-a", "models": []}
    assert lib.key_put(k1, {"token": k1}, expect={"absent": True}) == {"ok": False, "error": "key_exists"}
    assert lib.key_put(k2, {"token": k2}, expect={"alias": "team-a"}) == {
        "ok": False, "error": "alias_taken", "alias": "team-a"}
    assert lib.key_put(k2, {"token": k2, "key_alias": "team-a"}) == {
        "ok": False, "error": "alias_taken", "alias": "team-a"}
    assert lib.key_get(k2) is None
    # k1 renames itself: its old alias is free.
    assert lib.key_put(k1, {"token": k1, "key_alias": "team-b"})["ok"]
    assert lib.key_put(k2, {"token": k2, "key_alias": "team-a"})["ok"]
    assert lib.redis("GET", "tg:alias:team-a") == k2 and lib.redis("GET", "tg:alias:team-b") == k1
    # expect.alias null: the key holds no alias any more.
    assert lib.key_put(k1, {"token": k1, "key_alias": "team-b"}, expect={"alias": None})["ok"]
    assert lib.redis("GET", "tg:alias:team-b") is None
    # delete with a record keeps a tombstone (a config key stays hidden from seeding), and
    # releases the alias; a tombstone is absent for expect.absent.
    assert lib.key_put(k2, {"token": k2, "deleted": True}, op="delete")["ok"]
    assert lib.key_get(k2) == {"token": k2, "deleted": True}
    assert lib.redis("GET", "tg:alias:team-a") is None
    lib.sync("ra", 1, {"seed": {"keys": [{"token": k2}]}})
    assert lib.key_get(k2) == {"token": k2, "deleted": True}
    assert lib.key_put(k2, {"token": k2, "key_alias": "team-a"}, expect={"absent": True})["ok"]
    # delete with null removes it.
    assert lib.key_put(k2, None, op="delete")["ok"]
    assert lib.key_get(k2) is None and lib.redis("GET", "tg:alias:team-a") is None


def test_change_log_delivers_each_change_once_to_a_reader_that_advances(lib):
    k1, k2 = "1" * 64, "2" * 64
    lib.key_put(k1, {"token": k1})
    # A new replica starts after what happened before it.
    first = lib.sync("ra", 1, {})
    assert first["changes"] == [] and first["changes_cursor"] != "0-0" and first["changes_lost"] is False
    cursor = first["changes_cursor"]
    ids = [lib.key_put(k1, {"token": k1, "blocked": True}, op="block")["id"],
           lib.key_put(k2, {"token": k2})["id"],
           lib.key_put(k1, None, op="delete")["id"]]
    out = lib.sync("ra", 2, {"changes_after": cursor})
    assert out["changes"] == [{"id": ids[0], "token": k1, "op": "block"}, {"id": ids[1], "token": k2, "op": "put"},
                              {"id": ids[2], "token": k1, "op": "delete"}]
    assert out["changes_cursor"] == ids[2]
    # A retried sync returns the same changes; the advanced cursor gets nothing twice.
    assert lib.sync("ra", 2, {"changes_after": cursor}) == out
    out = lib.sync("ra", 3, {"changes_after": out["changes_cursor"]})
    assert out["changes"] == [] and out["changes_cursor"] == ids[2]
    last = lib.key_put(k2, {"token": k2}, op="unblock")["id"]
    out = lib.sync("ra", 4, {"changes_after": ids[2]})
    assert [c["id"] for c in out["changes"]] == [last]
    # Another reader still behind sees them all.
    assert len(lib.sync("rb", 1, {"changes_after": cursor})["changes"]) == 4


def test_change_log_is_capped_and_replies_are_bounded(lib):
    cursor = lib.sync("ra", 1, {})["changes_cursor"]
    # 12000 changes written straight into the stream (fast set-up), then one through the library.
    lib.redis("EVAL", "for i = 1, 12000 do redis.call('XADD', 'tg:changes', '*', 'token', 't' .. i, 'op', 'put') end",
              0)
    lib.key_put(KEY, {"token": KEY})
    assert 10_000 <= lib.redis("XLEN", "tg:changes") <= 10_200
    # The reader's position was trimmed away: it is told, and reads the rest 1000 at a time.
    out = lib.sync("ra", 2, {"changes_after": cursor})
    assert out["changes_lost"] is True and len(out["changes"]) == 1000
    out = lib.sync("ra", 3, {"changes_after": out["changes_cursor"]})
    assert out["changes_lost"] is False and len(out["changes"]) == 1000


# ---------------------------------------------------------------------------------------------
# Spend logs


def spend_record(i, key):
    return {"time": 1790000000000 + i, "request_id": f"req-{i}", "key_alias": None, "key_hash": key, "team": "t1",
            "model": "gpt-4o", "deployment": "gpt.0", "provider": "openai", "prompt_tokens": 10,
            "completion_tokens": 5, "cached_tokens": 0, "cost": 1000 + i, "status": "success"}


def test_spend_logs_filter_by_key_and_time(lib):
    k1, k2 = "1" * 64, "2" * 64
    first = lib.sync("ra", 1, {"spend_logs": [spend_record(i, k1 if i % 2 else k2) for i in range(6)]})
    time.sleep(0.01)
    mid = lib.sync("ra", 2, {})["now_ms"]
    time.sleep(0.01)
    lib.sync("ra", 3, {"spend_logs": [spend_record(i, k1) for i in range(6, 9)] + [spend_record(9, None)]})
    every = lib.spend_logs(limit=1000)
    # One entry per key per sync: a sync's records come grouped by key, in the order sent.
    assert [r["request_id"] for r in every["logs"]] == [f"req-{i}" for i in (0, 2, 4, 1, 3, 5, 6, 7, 8, 9)]
    assert every["next"] is None and every["logs"][0] == spend_record(0, k2)
    assert lib.redis("XLEN", "tg:spend") == 4 and lib.redis("GET", "tg:spend:n") == "10"
    assert [r["request_id"] for r in lib.spend_logs(api_key=k1)["logs"]] == ["req-1", "req-3", "req-5", "req-6",
                                                                                  "req-7", "req-8"]
    later = lib.spend_logs(api_key=k1, start_ms=mid)["logs"]
    assert [r["request_id"] for r in later] == ["req-6", "req-7", "req-8"]
    earlier = lib.spend_logs(start_ms=first["now_ms"] - 1000, end_ms=mid)["logs"]
    assert len(earlier) == 6
    # Pages: `next` continues where a page stopped.
    page = lib.spend_logs(api_key=k1, limit=4)
    assert len(page["logs"]) == 4 and page["next"].endswith("#1"), page["next"]
    rest = lib.spend_logs(api_key=k1, limit=4, after=page["next"])
    assert [r["request_id"] for r in rest["logs"]] == ["req-7", "req-8"] and rest["next"] is None
    # A page that ends with an entry continues after it.
    whole = lib.spend_logs(api_key=k1, limit=3)
    assert [r["request_id"] for r in whole["logs"]] == ["req-1", "req-3", "req-5"] and "#" not in whole["next"]
    assert [r["request_id"] for r in lib.spend_logs(api_key=k1, after=whole["next"])["logs"]] == ["req-6", "req-7",
                                                                                                   "req-8"]
    for bad in ("1-1#x", "1-1#", "#3", "x-1#2"):
        assert "error" in lib.spend_logs(after=bad)


def test_spend_logs_are_capped_and_reads_bounded(lib):
    lib.redis("EVAL", "for i = 1, 101000 do redis.call('XADD', 'tg:spend', '*', 'k', 'x', 'r', '{}') end", 0)
    lib.sync("ra", 1, {"spend_logs": [spend_record(1, KEY)]})
    assert 100_000 <= lib.redis("XLEN", "tg:spend") <= 100_200
    # A key filter reads at most 10000 entries per call; `next` says where to go on.
    page = lib.spend_logs(api_key=KEY)
    assert page["logs"] == [] and page["next"]
    pages = 1
    while page["next"] and not page["logs"]:
        page = lib.spend_logs(api_key=KEY, after=page["next"])
        pages += 1
    assert [r["request_id"] for r in page["logs"]] == ["req-1"] and pages in (10, 11)
    assert len(lib.spend_logs(limit=5000)["logs"]) == 1000


def test_spend_records_are_found_by_api_key_as_the_filter_writes_them(lib):
    token = "7" * 64
    lib.sync("ra2", 1, {"spend_logs": [{"request_id": "by-api-key", "api_key": token, "spend_micro": 3}]})
    assert [r["request_id"] for r in lib.spend_logs(api_key=token)["logs"]] == ["by-api-key"]


def test_spend_records_are_stored_as_sent_and_bad_blocks_skipped(lib):
    # Kept byte for byte (cjson would write 2^60 as 1.1529215046068e+18), never parsed.
    big = '{"request_id":"big","spend_micro":1152921504606846976,"tags":[],"n":{}}'
    two = big + "\n" + '{"request_id":"two"}'
    good = f"{KEY} 2 {len(two)}\n{two}\n" + f"- 1 21\n{{\"request_id\":\"none\"}}\n"
    out = lib.call("tg_sync", "rl", 1, tail='{"ttl_ms": 3000}\n' + good)
    assert out["seq"] == 1 and "spend_logs_refused" not in out, out
    raw = lib.redis("XRANGE", "tg:spend", "-", "+")
    assert [dict(zip(e[1][::2], e[1][1::2])) for e in raw] == [{"k": KEY, "n": "2", "r": two},
                                                              {"k": "", "n": "1", "r": '{"request_id":"none"}'}]
    assert lib.stack.webdis.call("FCALL", "tg_spend_logs", 0, json.dumps({"api_key": KEY}))[1]["FCALL"] == \
        '{"logs":[' + big + ',{"request_id":"two"}],"next":null}'
    # A bad block ends the reading; what came before it is kept, the rest counted as refused.
    for seq, (bad, refused) in enumerate([
            ("no header\n{}\n", 1),
            (f"{KEY} 3 999\n{{}}\n", 3),            # longer than what is left
            (f"{KEY} 2 7\n[1,2,3]\n", 2),           # not an object
            (f"bad/key 1 2\n{{}}\n", 1),
            (f"{'k' * 129} 1 2\n{{}}\n", 1),
            (f"{KEY} 0 2\n{{}}\n", 1)], start=2):
        before = lib.redis("XLEN", "tg:spend")
        out = lib.call("tg_sync", "rl", seq, tail='{"ttl_ms": 3000}\n' + f"- 1 2\n{{}}\n" + bad + good)
        assert out["seq"] == seq and out["spend_logs_refused"] == refused, (bad, out)
        assert lib.redis("XLEN", "tg:spend") == before + 1, bad


def test_version_7_callers_still_send_records_in_the_payload(lib):
    # A rolling deploy: replicas of the previous version put the records in the payload.
    out = lib.sync("old", 1, {"spend_logs": [spend_record(1, KEY), spend_record(2, None)]}, legacy=True)
    assert out["seq"] == 1
    assert [r["request_id"] for r in lib.spend_logs()["logs"]] == ["req-1", "req-2"]
    assert [r["request_id"] for r in lib.spend_logs(api_key=KEY)["logs"]] == ["req-1"]


def test_spend_log_keep_caps_the_stream_as_the_replica_says(lib):
    lib.redis("DEL", "tg:spend")
    for seq in range(1, 4):
        lib.sync("rk", seq, {"spend_log_keep": 1, "spend_logs": [spend_record(i, KEY) for i in range(200)]})
    # The oldest entries go while the rest hold `keep` records: the last sync's one entry stays.
    assert lib.redis("XLEN", "tg:spend") == 1 and lib.redis("GET", "tg:spend:n") == "200"
    # The index trimming reads (never the entries themselves) follows the stream.
    assert lib.redis("LLEN", "tg:spend:i") == 1
    assert lib.redis("LINDEX", "tg:spend:i", 0) == lib.redis("XRANGE", "tg:spend", "-", "+")[0][0] + " 200"
    assert len(lib.spend_logs(limit=1000)["logs"]) == 200
    for bad in (0, -1, "5", 10**9):
        assert "spend_log_keep" in lib.sync("rk", 10, {"spend_log_keep": bad})["error"]


def test_party_get_reads_a_party_without_writing(lib):
    lib.sync("rp", 1, {"parties": [entry("pg", {"max_budget": 10_000}, spent=700)]})
    got = lib.call("tg_party_get", "pg", json.dumps({"max_budget": 10_000}))
    assert got["spend"] == 700 and got["lifetime"] == 700 and got["known"] is True
    assert PARTY_FIELDS <= set(got)
    none = lib.call("tg_party_get", "never", "")
    assert none["spend"] == 0 and none["known"] is False
    assert lib.redis("EXISTS", "tg:p:{never}") == 0
    assert "error" in lib.call("tg_party_get", "", "")
    assert "error" in lib.call("tg_party_get", "pg", json.dumps({"max_budget": -1}))


# ---------------------------------------------------------------------------------------------
# Persistence


def test_all_state_survives_a_redis_restart_and_a_kill():
    with Stack() as s:
        lib = Lib(s)
        lib.load()
        limits = {"max_budget": 10_000}
        payload = {"parties": [entry("p", limits, spent=1234, grow={"b": 500})],
                   "cooldowns": [{"deployment": "gpt.0", "until_ms": int(time.time() * 1000) + 600_000}],
                   "spend_logs": [spend_record(1, KEY)]}
        reply = lib.sync("ra", 1, payload)
        assert lib.key_put(KEY, {"token": KEY, "key_alias": "kept"})["ok"]

        def check(seq):
            assert lib.call("tg_version") == {"version": VERSION}
            # The acknowledged sync is still known: its retry applies nothing.
            assert lib.sync("ra", 1, payload) == reply
            out = lib.sync("rb", seq, {"parties": [entry("p", limits)], "changes_after": "0-0"})
            p = out["parties"][0]
            assert p["spend"] == 1234 and p["leased"] == 500
            assert lib.leases("p") == {"ra": lease(b=500, m=reply["parties"][0]["m"])}
            assert [c["deployment"] for c in out["cooldowns"]] == ["gpt.0"]
            assert [c["token"] for c in out["changes"]] == [KEY]
            assert lib.key_get(KEY) == {"token": KEY, "key_alias": "kept"}
            assert lib.spend_logs()["logs"] == [spend_record(1, KEY)]
            assert lib.key_put("b" * 64, {"key_alias": "kept"}) == {"ok": False, "error": "alias_taken", "alias": "kept"}

        s.redis.restart()
        lib.wait_up()
        check(1)
        s.redis.kill()
        s.redis.start()
        lib.wait_up()
        check(2)


def test_a_caller_with_a_newer_library_is_refused_so_it_loads_its_own(lib):
    newer = str(int(VERSION) + 1)
    status, body = lib.stack.webdis.call("FCALL", "tg_sync", 0, "rv", 1, json.dumps({"library": newer, "parties": []}))
    assert status == 200
    assert body["FCALL"] == '{"error":"library_version","version":"' + VERSION + '"}'
    assert lib.redis("EXISTS", "tg:seq:{rv}") == 0, "nothing applied"
    # The same or an older version is served.
    for v in (VERSION, "1"):
        out = lib.sync("rv", 1 if v == VERSION else 2, {"library": v, "parties": []})
        assert "error" not in out, out


# ---------------------------------------------------------------------------------------------
# Responses API responses the gateway keeps


def put_response(lib, rid, prev, input_items, response, alias="claude", ttl=3600):
    """tg_response_put as the filter sends it: `<n> <input><response>` as the PUT body."""
    inp = json.dumps(input_items)
    return lib.call("tg_response_put", rid, prev or "-", alias, ttl,
                    tail=f"{len(inp.encode())} {inp}{json.dumps(response)}")


def test_a_kept_conversation_is_read_back_oldest_turn_first(lib):
    r1 = {"id": "resp_1", "output": [{"type": "message", "content": "one"}]}
    r2 = {"id": "resp_2", "output": []}
    assert put_response(lib, "resp_1", None, [{"role": "user", "content": "a"}], r1) == {"ok": True}
    assert put_response(lib, "resp_2", "resp_1", [{"role": "user", "content": "b"}], r2, alias="gpt") == {"ok": True}
    got = lib.call("tg_response_chain", "resp_2", 1 << 20)
    assert got == {"found": True, "alias": "gpt", "turns": [
        {"input": [{"role": "user", "content": "a"}], "response": r1},
        {"input": [{"role": "user", "content": "b"}], "response": r2}]}
    assert lib.call("tg_response_get", "resp_1") == {"found": True, "alias": "claude", "response": r1,
                                                     "input": [{"role": "user", "content": "a"}]}
    assert lib.call("tg_response_get", "resp_9") == {"found": False}
    assert lib.call("tg_response_chain", "resp_9", 100) == {"found": False}
    # Bounded: the reader says how much it would have had to read.
    assert lib.call("tg_response_chain", "resp_2", 60)["refused"] == "too_large"


def test_a_new_turn_keeps_its_chain_alive_and_a_deleted_turn_breaks_it(lib):
    put_response(lib, "resp_a", None, [], {"id": "resp_a"}, ttl=5)
    put_response(lib, "resp_b", "resp_a", [], {"id": "resp_b"}, ttl=500)
    assert 400 < lib.redis("TTL", "tg:resp:resp_a") <= 500
    assert lib.call("tg_response_delete", "resp_a") == {"deleted": True}
    assert lib.call("tg_response_delete", "resp_a") == {"deleted": False}
    assert lib.call("tg_response_chain", "resp_b", 1000) == {"found": True, "refused": "missing", "missing": "resp_a"}


def test_bad_response_calls_write_nothing(lib):
    bad = [
        ("tg_response_put", ("bad id!", "-", "a", 10), "2 []{}"),
        ("tg_response_put", ("resp_1", "bad id!", "a", 10), "2 []{}"),
        ("tg_response_put", ("resp_1", "-", "a", 0), "2 []{}"),
        ("tg_response_put", ("resp_1", "-", "a", 2592001), "2 []{}"),
        ("tg_response_put", ("resp_1", "-", "a", 10), "3 []{}"),
        ("tg_response_put", ("resp_1", "-", "a", 10), "2 {}[]"),
        ("tg_response_put", ("resp_1", "-", "a", 10), "[]{}"),
        ("tg_response_chain", ("resp_1", 0), None),
        ("tg_response_get", ("../x",), None),
    ]
    for function, args, tail in bad:
        assert "error" in lib.call(function, *args, tail=tail), (function, args, tail)
    assert lib.redis("KEYS", "tg:resp:*") == []


def test_syncs_tell_every_replica_which_deployment_holds_a_response(lib):
    # A replica without a cursor gets none of the past, and the cursor to read from.
    first = lib.sync("r1", 1, {"library": VERSION, "ttl_ms": 3000, "parties": []})
    assert first["responses"] == []
    cursor = first["responses_cursor"]
    held = {"i": "resp_abc", "d": "gpt-east", "a": "gpt", "t": 1700000000}
    lib.sync("r2", 1, {"library": VERSION, "ttl_ms": 3000, "parties": [], "responses": [held]})
    got = lib.sync("r1", 2, {"library": VERSION, "ttl_ms": 3000, "parties": [], "responses_after": cursor})
    assert got["responses"] == [held]
    again = lib.sync("r1", 3, {"library": VERSION, "ttl_ms": 3000, "parties": [],
                               "responses_after": got["responses_cursor"]})
    assert again["responses"] == []
    # An entry the store does not take refuses the sync whole, and writes nothing.
    for bad in ({"i": "bad id", "d": "x", "a": "y", "t": 1}, {"i": "resp_1", "d": "", "a": "y", "t": 1},
                {"i": "resp_1", "d": "x", "a": "y", "t": -1}, "resp_1"):
        out = lib.sync("r3", 1, {"library": VERSION, "ttl_ms": 3000, "parties": [], "responses": [bad]})
        assert "error" in out, bad
    assert lib.redis("XLEN", "tg:responses") == 1
