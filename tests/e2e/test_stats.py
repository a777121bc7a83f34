"""Request, token and latency metrics reach Prometheus through Envoy's admin endpoint with labels."""

import re
import urllib.request


def prometheus(gateway):
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.admin_port}/stats/prometheus", timeout=10) as r:
        return r.read().decode()


def value(text, metric, **labels):
    """The sample of `metric` whose labels include `labels` (0 if absent)."""
    for line in text.splitlines():
        m = re.match(rf"^{metric}\{{(.*)\}} (\S+)$", line)
        if not m:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    return 0.0


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
