"""The Redis and webdis the shared-state tests run against: AOF keeps what was acknowledged
across a restart and a kill, and webdis lets through only Tollgate's commands, only with its
credentials."""

import base64
import urllib.error
import urllib.request

import pytest

from harness import FILTER
from redis_stack import Stack

pytestmark = pytest.mark.skipif(FILTER == "module", reason="no filter involved: run once")

PROBE = """#!lua name=probe
redis.register_function('tg_probe', function(keys, args)
  return redis.call('INCRBY', 'tg:probe', tonumber(args[1]))
end)
"""


def get(stack, path, auth=True):
    headers = {}
    if auth:
        headers["authorization"] = "Basic " + base64.b64encode(stack.webdis.auth.encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(stack.webdis.url + path, headers=headers), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_functions_and_their_data_survive_restarts_and_kills():
    with Stack() as s:
        # Keep-alive as Envoy does: webdis 0.1.9 leaves many `Connection: close` requests unanswered.
        assert s.webdis.call("FUNCTION", "LOAD", "REPLACE", PROBE) == (200, {"FUNCTION": "probe"})
        assert s.webdis.call("FCALL", "tg_probe", 0, 5) == (200, {"FCALL": 5})
        s.redis.restart()
        # webdis answers 503 until it has reconnected: the filter treats that as the store down.
        assert s.webdis.call_when_up("FCALL", "tg_probe", 0, 1) == (200, {"FCALL": 6})
        s.redis.kill()
        s.redis.start()
        assert s.webdis.call_when_up("FCALL", "tg_probe", 0, 1) == (200, {"FCALL": 7})
        # A Redis error comes back inside a 200.
        assert s.webdis.call("FCALL", "nope", 0) == (200, {"FCALL": [False, "ERR Function not found"]})


def test_webdis_lets_through_only_tollgates_commands():
    with Stack() as s:
        assert get(s, "/FUNCTION/LIST") == 200
        assert get(s, "/FUNCTION/LIST", auth=False) == 403
        for command in ("/SET/a/b", "/KEYS/*", "/FLUSHALL", "/CONFIG/GET/dir", "/FCALL/tg_probe/0/1"):
            assert get(s, command, auth=command.startswith("/FCALL") is False) == 403, command
