"""Prices: a deployment without a known price loads with a warning naming it (`tollgate check` and
Envoy's log), and configured prices and context windows are accepted."""

import os

import yaml

from harness import run_cli

SET_A_PRICE = "charged 0 until a price is configured: set litellm_params.input_cost_per_token/output_cost_per_token"
ENV = {**os.environ, "OPENAI_API_KEY": "sk-x", "AZURE_API_KEY": "k", "HOSTED_VLLM_API_KEY": "k"}

AZURE = {"model": "azure/my-deployment", "api_base": "https://my-resource.openai.azure.com",
         "api_version": "2024-10-21", "api_key": "os.environ/AZURE_API_KEY"}
VLLM = {"model": "hosted_vllm/my-llama", "api_base": "http://127.0.0.1:8000/v1"}


def check(tmp_path, model_list):
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump({"model_list": model_list, "general_settings": {"master_key": "sk-1234"}}))
    return run_cli("check", str(p), env=ENV)


def warnings(r):
    return [line for line in r.stderr.splitlines() if line.startswith("warning: ")]


def test_check_warns_about_unpriced_deployments(tmp_path):
    r = check(tmp_path, [
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini"}},
        {"model_name": "llama", "litellm_params": VLLM},
        {"model_name": "azure-gpt", "litellm_params": AZURE},
    ])
    assert r.returncode == 0, r.stderr
    assert "OK: 3 deployments" in r.stdout
    w = warnings(r)
    assert f"warning: model_list[1].litellm_params.model: 'hosted_vllm/my-llama' has no built-in price, so model 'llama' is {SET_A_PRICE}" in w, r.stderr
    azure = [line for line in w if line.startswith("warning: model_list[2].litellm_params.model:")]
    assert len(azure) == 1 and SET_A_PRICE in azure[0] and "model_info.base_model" in azure[0], r.stderr
    assert not any("model_list[0]" in line for line in w), r.stderr
    assert "3 warning(s)" not in r.stdout and "2 warning(s)" in r.stdout


def test_check_accepts_prices_and_context_windows(tmp_path):
    # YAML reads 3e-6 (no dot) as a string, as LiteLLM's loader does; both spellings are prices.
    r = check(tmp_path, [
        {"model_name": "llama", "litellm_params": {**VLLM, "input_cost_per_token": "2e-7", "output_cost_per_token": 4.0e-7,
                                                    "cache_read_input_token_cost": 1.0e-7},
         "model_info": {"max_input_tokens": 8192, "max_output_tokens": 2048}},
        {"model_name": "azure-gpt", "litellm_params": AZURE, "model_info": {"base_model": "azure/gpt-4o", "max_tokens": 4096}},
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "input_cost_per_token": 1.0e-7},
         "model_info": {"cache_creation_input_token_cost": 2.0e-7, "output_cost_per_token": 5.0e-7}},
    ])
    assert r.returncode == 0, r.stderr
    assert warnings(r) == [], r.stderr
    assert "0 warning(s)" in r.stdout


def test_check_names_invalid_prices(tmp_path):
    r = check(tmp_path, [
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "output_cost_per_token": -1.0e-6},
         "model_info": {"max_input_tokens": 0, "input_cost_per_token": "cheap"}},
    ])
    assert r.returncode == 1
    for field in ("model_list[0].litellm_params.output_cost_per_token", "model_list[0].model_info.max_input_tokens",
                  "model_list[0].model_info.input_cost_per_token"):
        assert f"error: {field}: must be a number" in r.stderr, (field, r.stderr)


def test_envoy_logs_unpriced_deployments(gateway):
    # The shared gateway routes to a mock vLLM server whose model has no built-in price.
    log = gateway.log()
    assert "'hosted_vllm/meta-llama/Llama-3.1-8B-Instruct' has no built-in price" in log
    assert SET_A_PRICE in log
