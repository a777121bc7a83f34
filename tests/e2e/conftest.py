"""Session fixtures: every mock provider, and one real Envoy (2 workers) with Tollgate routing to
them all, configured by `tollgate render` from a LiteLLM-style config."""

import os
import sys

import openai
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import Envoy, free_port  # noqa: E402
from mocks import all_mock_classes  # noqa: E402

MASTER_KEY = "sk-tollgate-master-4Kp8Qs"


@pytest.fixture(scope="session")
def mocks():
    started = {cls.name: cls().start() for cls in all_mock_classes()}
    yield started
    for m in started.values():
        m.stop()


# A deployment whose upstream refuses connections: nothing listens on this port.
DEAD_PORT = free_port()


def gateway_config(mocks, **settings):
    model_list = []
    for m in mocks.values():
        model_list.extend(m.model_list(m.base_url))
    model_list.append({"model_name": "dead-end", "litellm_params": {
        "model": "openai/gpt-4o", "api_base": f"http://127.0.0.1:{DEAD_PORT}/v1", "api_key": "sk-unused-dead-end"}})
    config = {
        "model_list": model_list,
        # set_verbose is a LiteLLM setting Tollgate accepts without acting on it (a logged warning).
        "litellm_settings": {"drop_params": False, "set_verbose": False},
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
    }
    for section, values in settings.items():
        config.setdefault(section, {}).update(values)
    return config


def gateway_env(mocks):
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY}
    for m in mocks.values():
        env.update(m.env)
    return env


@pytest.fixture(scope="session")
def gateway(mocks):
    envoy = Envoy(gateway_config(mocks), env=gateway_env(mocks), concurrency=2)
    envoy.start()
    yield envoy
    envoy.stop()


@pytest.fixture(autouse=True)
def _reset_mocks(mocks):
    for m in mocks.values():
        m.reset()
    yield


@pytest.fixture
def client(gateway):
    """The official OpenAI SDK, pointed at the gateway, retries off so each call is one request."""
    return openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
