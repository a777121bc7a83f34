"""Fixtures the fleet tests share: one Redis 7 behind webdis per test module (started and stopped
by the test), and an OpenAI-compatible provider mock per module."""

import pytest

from mocks.openai_mock import OpenAIMock
from redis_stack import Stack


@pytest.fixture(scope="module")
def stack():
    with Stack() as s:
        yield s


@pytest.fixture(scope="module")
def provider():
    m = OpenAIMock().start()
    yield m
    m.stop()
