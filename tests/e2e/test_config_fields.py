"""LiteLLM configs as people write them load (issue 17, items 5 and 8): a field LiteLLM accepts in
its own sections is a warning, never a refusal, while a typo of a field Tollgate acts on, an
unknown field in Tollgate's own sections and an invalid value stay errors; and the messages say
what to do (which variable to set, `ollama_chat/`, `--help`)."""

import os

import openai
import yaml

from conftest import MASTER_KEY
from harness import Envoy, run_cli

OPENAI_KEY = "sk-test-openai-Zq3XkP9vW2mT7yR4"

# Fields from LiteLLM's documentation and a widely read guide, none of which Tollgate acts on.
LITELLM_ONLY = {
    "litellm_settings": {
        "s3_callback_params": {"s3_bucket_name": "logs", "s3_region_name": "us-west-2"},
        "guardrails": [{"prompt_injection": {"callbacks": ["lakera_prompt_injection"], "default_on": True}}],
        "callbacks": ["prometheus"],
        "a_setting_from_a_newer_litellm": True,
    },
    "general_settings": {"model_cost_map_sync": True},
    "router_settings": {"a_router_setting_from_a_newer_litellm": 3},
}


def litellm_config(api_base):
    config = {
        "model_list": [{
            "model_name": "gpt",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": api_base,
                               "api_key": "os.environ/OPENAI_API_KEY", "a_param_from_a_newer_litellm": "x"},
            "model_info": {"my_custom_key": "my_custom_value"},
        }],
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
    }
    for section, fields in LITELLM_ONLY.items():
        config.setdefault(section, {}).update(fields)
    return config


def write(tmp_path, doc, name="config.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return str(p)


def env(**extra):
    return {**os.environ, "OPENAI_API_KEY": OPENAI_KEY, "TOLLGATE_MASTER_KEY": MASTER_KEY, **extra}


UNACTED = ("litellm_settings.s3_callback_params", "litellm_settings.guardrails",
           "litellm_settings.a_setting_from_a_newer_litellm", "general_settings.model_cost_map_sync",
           "router_settings.a_router_setting_from_a_newer_litellm",
           "model_list[0].litellm_params.a_param_from_a_newer_litellm", "model_list[0].model_info.my_custom_key")


def test_check_accepts_what_litellm_accepts_with_warnings(tmp_path):
    r = run_cli("check", write(tmp_path, litellm_config("http://127.0.0.1:9/v1")), env=env())
    assert r.returncode == 0, r.stderr
    assert "OK: 1 deployments" in r.stdout
    lines = r.stderr.splitlines()
    for path in UNACTED:
        line = next((l for l in lines if l.startswith(f"warning: {path}:")), None)
        assert line is not None, (path, r.stderr)
        assert "not act on" in line or "not acted on" in line, line
    # Metrics are always on: asking for LiteLLM's prometheus callback is not "ignored".
    assert "callbacks" not in r.stderr, r.stderr


def test_check_names_the_callbacks_it_does_not_run(tmp_path):
    doc = litellm_config("http://127.0.0.1:9/v1")
    doc["litellm_settings"]["callbacks"] = ["prometheus", "langfuse"]
    doc["litellm_settings"]["success_callback"] = "s3"
    r = run_cli("check", write(tmp_path, doc), env=env())
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stderr.splitlines() if l.startswith("warning: litellm_settings.callbacks:"))
    assert "'langfuse'" in line and "not acted on" in line and "prometheus" in line, line
    assert "warning: litellm_settings.success_callback: " in r.stderr and "'s3'" in r.stderr, r.stderr
    doc["litellm_settings"]["callbacks"] = {"prometheus": True}
    r = run_cli("check", write(tmp_path, doc), env=env())
    assert r.returncode == 1 and "error: litellm_settings.callbacks: must be a list of callback names" in r.stderr, r.stderr


def test_check_keeps_typos_own_sections_and_bad_values_as_errors(tmp_path):
    doc = litellm_config("http://127.0.0.1:9/v1")
    doc["litellm_settings"]["drop_parms"] = True
    doc["router_settings"]["num_retires"] = 2
    doc["general_settings"]["master_kye"] = "sk-x"
    doc["model_list"][0]["litellm_params"]["api_bse"] = "http://x"
    doc["model_list"][0]["model_info"]["max_input_tokenz"] = 10
    doc["tollgate_settings"] = {"a_tollgate_setting_that_does_not_exist": 1}
    doc["keys"] = [{"key": "sk-virtual-1", "a_key_field_that_does_not_exist": 1}]
    doc["router_settings"]["num_retries"] = "many"
    r = run_cli("check", write(tmp_path, doc), env=env())
    assert r.returncode == 1, r.stderr
    for path, hint in (("litellm_settings.drop_parms", "drop_params"), ("router_settings.num_retires", "num_retries"),
                       ("general_settings.master_kye", "master_key"),
                       ("model_list[0].litellm_params.api_bse", "api_base"),
                       ("model_list[0].model_info.max_input_tokenz", "max_input_tokens")):
        assert f"error: {path}: " in r.stderr and f"did you mean '{hint}'" in r.stderr, (path, r.stderr)
    assert "error: tollgate_settings.a_tollgate_setting_that_does_not_exist: " in r.stderr, r.stderr
    assert "error: keys[0].a_key_field_that_does_not_exist: " in r.stderr, r.stderr
    assert "error: router_settings.num_retries: " in r.stderr, r.stderr
    # The fields LiteLLM accepts are still only warnings beside them.
    assert "warning: general_settings.model_cost_map_sync: " in r.stderr, r.stderr


def test_gateway_starts_and_serves_with_fields_litellm_accepts(mocks):
    openai_mock = mocks["openai"]
    with Envoy(litellm_config(f"{openai_mock.base_url}/v1"), env={"OPENAI_API_KEY": OPENAI_KEY,
                                                                "TOLLGATE_MASTER_KEY": MASTER_KEY}) as gw:
        client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
        r = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content
        assert len(openai_mock.received) == 1
        log = gw.log()
    assert "tollgate: configured 1 deployments" in log, log[-3000:]
    for path in UNACTED:
        assert f"tollgate config warning: {path}: " in log, (path, log[-3000:])
    assert "litellm_settings.callbacks" not in log


def test_a_typo_of_an_acted_on_field_still_stops_the_gateway(tmp_path, mocks):
    import json
    import subprocess
    from harness import ENVOY, FILTER, MODULE, WASM, free_port
    from render_helpers import minimal_bootstrap, minimal_module_bootstrap
    config = litellm_config(f"{mocks['openai'].base_url}/v1")
    config["litellm_settings"]["drop_parms"] = True
    r = run_cli("render", write(tmp_path, config), env=env())
    assert r.returncode == 1 and "litellm_settings.drop_parms" in r.stderr, r.stderr
    # A hand-written bootstrap reaches the filter, which refuses it the same way.
    make = minimal_module_bootstrap if FILTER == "module" else minimal_bootstrap
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(make(json.dumps(config), free_port(), free_port(),
                                        MODULE if FILTER == "module" else WASM)))
    p = subprocess.run([ENVOY, "-c", str(path), "--use-dynamic-base-id", "-l", "info"], capture_output=True,
                       text=True, timeout=60, env=env())
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-3000:]
    assert "litellm_settings.drop_parms" in out and "did you mean 'drop_params'" in out, out[-3000:]
    assert "refusing to start" in out, out[-3000:]


def test_api_base_from_an_unset_variable_says_which_to_set(tmp_path, mocks):
    azure = mocks["azure"]
    doc = {
        "model_list": [{"model_name": "azure-gpt", "litellm_params": {
            "model": "azure/my-gpt4o-deployment", "api_base": "os.environ/TOLLGATE_TEST_AZURE_API_BASE",
            "api_version": "2024-10-21", "api_key": "os.environ/AZURE_API_KEY"}}],
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
    }
    path = write(tmp_path, doc)
    unset = {k: v for k, v in env(**azure.env).items() if k != "TOLLGATE_TEST_AZURE_API_BASE"}
    for cmd in (("check", path), ("render", path, "-o", str(tmp_path / "envoy.yaml"))):
        r = run_cli(*cmd, env=unset)
        assert r.returncode == 1, r.stderr
        assert "api_base is required" not in r.stderr, r.stderr
        line = next(l for l in r.stderr.splitlines() if l.startswith("error: model_list[0].litellm_params.api_base:"))
        assert "TOLLGATE_TEST_AZURE_API_BASE is not set" in line and "render" in line and "cluster" in line, line

    # Set, it is where the cluster goes: a request reaches the mock through it.
    with Envoy(doc, env={**azure.env, "TOLLGATE_MASTER_KEY": MASTER_KEY,
                         "TOLLGATE_TEST_AZURE_API_BASE": azure.base_url}) as gw:
        client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
        r = client.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content
    assert azure.received and azure.received[-1].path.startswith("/openai/deployments/my-gpt4o-deployment/")


def test_ollama_prefix_suggests_ollama_chat(tmp_path):
    doc = {"model_list": [{"model_name": "llama", "litellm_params": {"model": "ollama/llama3.2",
                                                                      "api_base": "http://127.0.0.1:11434"}}]}
    r = run_cli("check", write(tmp_path, doc))
    assert r.returncode == 1
    assert "error: model_list[0].litellm_params.model: " in r.stderr and "ollama_chat/llama3.2" in r.stderr, r.stderr


def test_help_is_help_for_every_command():
    for cmd in ("check", "render", "webdis-config"):
        for flag in ("--help", "-h"):
            r = run_cli(cmd, flag)
            assert r.returncode == 0, (cmd, flag, r.stderr)
            assert "usage:" in r.stdout and "cannot read" not in r.stdout + r.stderr, (cmd, flag, r.stdout, r.stderr)
