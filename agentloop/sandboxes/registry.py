"""Sandbox providers by name: `get_provider("local")`, `get_provider("kubernetes")`.

Providers are built lazily (the kubernetes client is only imported when asked
for) and cached, so every caller shares one instance per name. Tests register a
fake with `register_provider("fake", FakeProvider())` and remove it with
`unregister_provider("fake")` (or use the `override_provider` context manager).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from agentloop.sandboxes.base import SandboxError, SandboxProvider


def _local() -> SandboxProvider:
    from agentloop.sandboxes.local import LocalProvider

    return LocalProvider()


def _kubernetes() -> SandboxProvider:
    from agentloop.sandboxes.kubernetes import KubernetesProvider

    return KubernetesProvider.from_settings()


_FACTORIES: dict[str, Callable[[], SandboxProvider]] = {"local": _local, "kubernetes": _kubernetes}
_INSTANCES: dict[str, SandboxProvider] = {}


def get_provider(name: str) -> SandboxProvider:
    if name not in _INSTANCES:
        factory = _FACTORIES.get(name)
        if factory is None:
            known = ", ".join(sorted(_FACTORIES))
            raise SandboxError(f"unknown sandbox provider {name!r} (known: {known}).")
        _INSTANCES[name] = factory()
    return _INSTANCES[name]


def provider_names() -> list[str]:
    """Names get_provider() knows, without building any provider."""
    return sorted(_FACTORIES)


def register_provider(name: str, provider: SandboxProvider) -> None:
    """Make get_provider(name) return this instance (tests: a fake provider)."""
    _FACTORIES[name] = lambda: provider
    _INSTANCES[name] = provider


def unregister_provider(name: str) -> None:
    _INSTANCES.pop(name, None)
    if name in ("local", "kubernetes"):
        _FACTORIES[name] = _local if name == "local" else _kubernetes
    else:
        _FACTORIES.pop(name, None)


@contextmanager
def override_provider(name: str, provider: SandboxProvider) -> Iterator[SandboxProvider]:
    """Within the block get_provider(name) returns provider; the previous one after."""
    previous_factory = _FACTORIES.get(name)
    previous_instance = _INSTANCES.get(name)
    register_provider(name, provider)
    try:
        yield provider
    finally:
        _INSTANCES.pop(name, None)
        if previous_instance is not None:
            _INSTANCES[name] = previous_instance
        if previous_factory is not None:
            _FACTORIES[name] = previous_factory
        else:
            _FACTORIES.pop(name, None)
