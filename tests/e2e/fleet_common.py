"""Fixtures the fleet tests share: one Redis 7 behind webdis per test module (started and stopped
by the test), an OpenAI-compatible provider mock per module, and replicas started together."""

import contextlib

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


@contextlib.contextmanager
def started(envoys):
    """Starts every replica, yields them, and stops them all however the block ends."""
    try:
        for e in envoys:
            e.start()
        yield envoys
    finally:
        for e in envoys:
            e.stop()
