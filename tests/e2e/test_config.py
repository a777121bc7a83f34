"""A bad config fails loudly: `tollgate check` lists every error by field, and Envoy refuses to start."""

import os

import pytest
import yaml

from conftest import gateway_config, gateway_env
from harness import Envoy, run_cli

GOOD = {
    "model_list": [{"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"}}],
    "general_settings": {"master_key": "sk-1234"},
}


def write(tmp_path, doc, name="config.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return str(p)


def test_check_accepts_a_litellm_config(tmp_path):
    doc = dict(GOOD, litellm_settings={"drop_params": True, "set_verbose": True, "callbacks": ["langfuse"]},
               router_settings={"routing_strategy": "simple-shuffle"})
    r = run_cli("check", write(tmp_path, doc), env={**os.environ, "OPENAI_API_KEY": "sk-x"})
    assert r.returncode == 0, r.stderr
    assert "OK: 1 deployments" in r.stdout
    assert "litellm_settings.set_verbose" in r.stderr and "warning" in r.stderr


def test_check_names_every_error(tmp_path):
    doc = {
        "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_bse": "http://x"}},
            {"model_name": "x", "litellm_params": {"model": "nosuchprovider/m"}},
            {"model_name": "", "litellm_params": {"model": "openai/gpt-4o"}},
            {"model_name": "h", "litellm_params": {"model": "hosted_vllm/llama"}},
        ],
        "litellm_settings": {"drop_params": "sometimes"},
        "general_setings": {},
    }
    r = run_cli("check", write(tmp_path, doc))
    assert r.returncode == 1
    for needle in ("model_list[0].litellm_params.api_bse", "did you mean 'api_base'", "model_list[1].litellm_params.model",
                   "nosuchprovider", "model_list[2].model_name", "model_list[3].litellm_params", "api_base is required",
                   "litellm_settings.drop_params", "general_setings"):
        assert needle in r.stderr, (needle, r.stderr)


def test_check_reads_json_too(tmp_path):
    p = tmp_path / "config.json"
    import json
    p.write_text(json.dumps(GOOD))
    assert run_cli("check", str(p)).returncode == 0


def test_render_refuses_an_invalid_config(tmp_path):
    r = run_cli("render", write(tmp_path, {"model_list": "nope"}))
    assert r.returncode == 1 and "model_list" in r.stderr


def test_render_output_is_valid_envoy(tmp_path):
    doc = dict(GOOD, model_list=GOOD["model_list"] + [
        {"model_name": "claude", "litellm_params": {"model": "openai/x", "api_base": "https://api.example.com/v1"}}])
    out = tmp_path / "envoy.yaml"
    r = run_cli("render", write(tmp_path, doc), "-o", str(out))
    assert r.returncode == 0, r.stderr
    bootstrap = yaml.safe_load(out.read_text())
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    assert clusters["tollgate_api.example.com_443"]["transport_socket"]["typed_config"]["sni"] == "api.example.com"
    filters = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    wasm = next(f for f in filters if f["name"] == "envoy.filters.http.wasm")
    assert wasm["typed_config"]["config"]["vm_config"]["environment_variables"]["host_env_keys"] == ["OPENAI_API_KEY"]
    assert "sk-" not in wasm["typed_config"]["config"]["vm_config"]["environment_variables"].__repr__()
    import subprocess
    from harness import ENVOY
    # Validation loads the plugin, which reads its secrets from the environment.
    v = subprocess.run([ENVOY, "--mode", "validate", "-c", str(out)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "OPENAI_API_KEY": "sk-x"})
    assert v.returncode == 0, v.stdout + v.stderr


def test_envoy_refuses_to_start_with_a_missing_secret(mocks):
    config = gateway_config(mocks)
    config["model_list"].append({"model_name": "broken", "litellm_params": {
        "model": "openai/gpt-4o", "api_key": "os.environ/TOLLGATE_TEST_UNSET_KEY"}})
    envoy = Envoy(config, env=gateway_env(mocks))
    envoy.env.pop("TOLLGATE_TEST_UNSET_KEY", None)
    envoy.start(expect_failure=True)
    code = envoy.wait_exit()
    log = envoy.log()
    envoy.stop()

    assert code not in (None, 0), log[-2000:]
    assert "TOLLGATE_TEST_UNSET_KEY" in log
    assert f"model_list[{len(config['model_list']) - 1}].litellm_params.api_key" in log
    assert "refusing to start" in log


def test_envoy_refuses_to_start_with_a_bad_plugin_config(tmp_path, mocks):
    # A hand-written Envoy config can carry anything; the filter validates it on load.
    import json
    from harness import ENVOY, WASM, free_port
    import subprocess
    from render_helpers import minimal_bootstrap
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(minimal_bootstrap(json.dumps({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_bse": "http://x"}}]}),
                                                    free_port(), free_port(), WASM)))
    p = subprocess.run([ENVOY, "-c", str(path), "--use-dynamic-base-id", "-l", "info"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "model_list[0].litellm_params.api_bse" in p.stdout + p.stderr


def test_a_bad_config_stops_the_dynamic_module_too(tmp_path):
    # The dynamic module validates the same way: Envoy refuses the filter, the log names the field.
    import json
    import subprocess
    from harness import ENVOY, MODULE, free_port
    from render_helpers import minimal_module_bootstrap
    path = tmp_path / "envoy.yaml"
    doc = {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_bse": "http://x"}}]}
    path.write_text(yaml.safe_dump(minimal_module_bootstrap(json.dumps(doc), free_port(), free_port(), MODULE)))
    p = subprocess.run([ENVOY, "-c", str(path), "--use-dynamic-base-id", "-l", "info"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert "model_list[0].litellm_params.api_bse" in out
    assert "tollgate: refusing to start" in out


def test_hand_written_example_is_valid_envoy():
    import subprocess
    from harness import ENVOY, ROOT
    v = subprocess.run([ENVOY, "--mode", "validate", "-c", "envoy/hand-written.yaml"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env={**os.environ, "OPENAI_API_KEY": "sk-x", "TOLLGATE_MASTER_KEY": "sk-m"})
    assert v.returncode == 0, v.stdout[-3000:] + v.stderr[-3000:]


@pytest.mark.parametrize("form,flag,path,name", [
    ("wasm", "--wasm", "/etc/envoy/tollgate.wasm", "tollgate.rendered.yaml"),
    ("module", "--module", "/etc/envoy/libtollgate_module.so", "tollgate-module.rendered.yaml"),
])
def test_rendered_example_is_current(tmp_path, form, flag, path, name):
    from harness import ROOT
    out = tmp_path / "rendered.yaml"
    r = run_cli("render", os.path.join(ROOT, "examples/gateway.yaml"), "--listen", "0.0.0.0:4000", "--admin", "127.0.0.1:9901",
                flag, path, "-o", str(out))
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "envoy", name)) as f:
        assert out.read_text() == f.read(), f"envoy/{name} is stale: run `make examples`"


def test_example_gateway_config_checks(tmp_path):
    from harness import ROOT
    r = run_cli("check", os.path.join(ROOT, "examples/gateway.yaml"))
    assert r.returncode == 0, r.stderr
    assert "OK: 6 deployments in 6 model groups" in r.stdout


def test_unused_litellm_fields_are_warned_about_in_envoy_log(gateway):
    log = gateway.log()
    assert "tollgate config warning: litellm_settings.set_verbose: is a LiteLLM setting that Tollgate does not act on yet" in log
    assert "tollgate: configured" in log


def test_router_example_checks_renders_and_validates(tmp_path):
    import subprocess
    from harness import ENVOY, ROOT, WASM
    path = os.path.join(ROOT, "examples/router.yaml")
    r = run_cli("check", path)
    assert r.returncode == 0, r.stderr
    # Every router setting in the example is acted on (none is merely tolerated).
    assert "router_settings" not in r.stderr, r.stderr
    out = tmp_path / "envoy.yaml"
    assert run_cli("render", path, "--wasm", WASM, "-o", str(out)).returncode == 0
    bootstrap = yaml.safe_load(out.read_text())
    names = [l["name"] for l in bootstrap["static_resources"]["listeners"]]
    assert names == ["tollgate", "tollgate_attempt"]
    routes = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    assert routes[0]["route"]["retry_policy"]["retry_on"] == "retriable-headers"
    env = {**os.environ, **{k: "x" for k in ("OPENAI_API_KEY", "AZURE_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "TOLLGATE_MASTER_KEY")}}
    v = subprocess.run([ENVOY, "--mode", "validate", "-c", str(out)], capture_output=True, text=True, timeout=60, env=env)
    assert v.returncode == 0, v.stdout[-3000:] + v.stderr[-3000:]
