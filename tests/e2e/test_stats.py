"""Request, token and latency metrics reach Prometheus through Envoy's admin endpoint with labels."""

import json
import re
import urllib.request


def prometheus(gateway):
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.admin_port}/stats/prometheus", timeout=10) as r:
        return r.read().decode()


def value(text, metric, **labels):
    """The sum of the samples of `metric` whose labels include `labels` (0 if none): other tests
    on the shared gateway leave series of other keys and teams beside the ones a test makes."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{metric}\{{(.*)\}} (\S+)$", line)
        if not m:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_metrics_with_labels(gateway, client):
    before = prometheus(gateway)
    r = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "count these words"}])
    stream = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    except Exception:
        pass
    after = prometheus(gateway)

    def delta(metric, **labels):
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert delta("tollgate_requests_total", model="gpt", provider="openai", status="2xx") == 1
    assert delta("tollgate_requests_total", model="claude", provider="anthropic", status="2xx") == 1
    assert delta("tollgate_requests_total", model="-", provider="-", status="4xx") == 1
    assert delta("tollgate_tokens_total", model="gpt", provider="openai", token_type="input") == r.usage.prompt_tokens
    assert delta("tollgate_tokens_total", model="gpt", provider="openai", token_type="output") == r.usage.completion_tokens
    usage = chunks[-1].usage
    assert delta("tollgate_tokens_total", model="claude", provider="anthropic", token_type="output") == usage.completion_tokens
    assert "tollgate_upstream_latency_ms_bucket" in after
    assert "tollgate_time_to_first_token_ms_bucket" in after


def test_master_key_spend_and_unpriced_requests(gateway, client):
    before = prometheus(gateway)
    client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "priced"}])
    client.chat.completions.create(model="vllm-local", messages=[{"role": "user", "content": "unpriced"}])
    after = prometheus(gateway)

    def delta(metric, **labels):
        return value(after, metric, **labels) - value(before, metric, **labels)

    # gpt-4o-mini is priced by the built-in table; the master key's spend is counted too.
    assert delta("tollgate_spend_micro_usd", key_alias="master", model="gpt", provider="openai") > 0
    # hosted_vllm has no known price: charged 0 and counted.
    assert delta("tollgate_unpriced_requests_total", key_alias="master", model="vllm-local", provider="hosted_vllm") == 1


def test_generated_keys_share_one_series_unless_marked(gateway):
    """Metric series do not grow with the number of keys: a key the admin API creates is counted
    under key_alias="(other)" unless it is marked `per_key_metrics: true` (config keys are marked
    by default), so thousands of generated keys cost a bounded scrape."""
    from harness import http
    from conftest import MASTER_KEY

    auth = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}

    def admin(path, body):
        status, _, raw = http("POST", f"{gateway.base_url}{path}", body, auth)
        assert status == 200, raw
        return json.loads(raw)

    def chat(key):
        status, _, raw = http("POST", f"{gateway.base_url}/v1/chat/completions",
                              {"model": "gpt", "messages": [{"role": "user", "content": "count me"}]},
                              {"authorization": f"Bearer {key}", "content-type": "application/json"})
        assert status == 200, raw

    keys = [admin("/key/generate", {"key_alias": f"bulk-{i}"})["key"] for i in range(120)]
    marked = admin("/key/generate", {"key_alias": "bulk-marked", "per_key_metrics": True, "max_budget": 5.0})["key"]
    chat(keys[0])
    chat(marked)
    before = prometheus(gateway)
    for key in keys:
        chat(key)
    chat(marked)
    after = prometheus(gateway)
    try:
        grown = len(after.splitlines()) - len(before.splitlines())
        # Without the bound each key added about 49 lines (its own requests, tokens, spend and
        # latency histograms): 120 keys would be some 5,900.
        assert grown <= 40, f"the scrape grew by {grown} lines for {len(keys)} new keys"
        assert value(after, "tollgate_requests_total", key_alias="(other)", model="gpt", status="2xx") - \
            value(before, "tollgate_requests_total", key_alias="(other)", model="gpt", status="2xx") == len(keys)
        assert not any('key_alias="bulk-' in line and 'bulk-marked' not in line for line in after.splitlines())
        # The marked key keeps its own series, and its budget gauge.
        assert value(after, "tollgate_requests_total", key_alias="bulk-marked", model="gpt", status="2xx") == 2
        assert value(after, "tollgate_key_budget_remaining_micro_usd", key_alias="bulk-marked") > 0
        # Marking a key later gives it its own series from then on.
        admin("/key/update", {"key": keys[1], "per_key_metrics": True})
        chat(keys[1])
        assert value(prometheus(gateway), "tollgate_requests_total", key_alias="bulk-1", model="gpt", status="2xx") == 1
    finally:
        admin("/key/delete", {"keys": keys + [marked]})
