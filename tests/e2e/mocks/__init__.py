"""Mock providers on 127.0.0.1 that speak each provider's real wire format and record what they receive.

Each module defines one `MockProvider` subclass with `name`, `env` (secrets Envoy gets) and
`model_list(base_url)` (the deployments the shared test gateway routes to it). `all_mocks()`
finds every module here, so adding a provider's mock touches no shared file.
"""

import importlib
import inspect
import pkgutil

from .base import MockProvider


def all_mock_classes():
    classes = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, MockProvider) and obj is not MockProvider and obj.__module__ == module.__name__:
                classes.append(obj)
    return classes
