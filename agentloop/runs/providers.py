"""The one place runs look up sandbox providers by name.

Everything in runs (config validation, launch, reconcile) goes through
`get_provider` / `provider_names`, so tests can slot in an in-memory provider
(tests/fake_sandbox.py) with `override_provider` without touching the registry.
"""

from __future__ import annotations

from contextlib import contextmanager

from agentloop.sandboxes.base import SandboxProvider

_overrides: dict[str, SandboxProvider] = {}


def _registry():
    try:
        from agentloop.sandboxes import registry
    except ImportError:  # the registry is being written alongside; runs still import
        return None
    return registry


def get_provider(name: str) -> SandboxProvider:
    if name in _overrides:
        return _overrides[name]
    registry = _registry()
    if registry is None:
        raise LookupError(f"Unknown sandbox provider {name!r}.")
    return registry.get_provider(name)


def provider_names() -> set[str]:
    names = set(_overrides)
    registry = _registry()
    if registry is not None:
        names |= set(getattr(registry, "PROVIDERS", {}) or {})
    return names


@contextmanager
def override_provider(name: str, provider: SandboxProvider):
    previous = _overrides.get(name)
    _overrides[name] = provider
    try:
        yield provider
    finally:
        if previous is None:
            _overrides.pop(name, None)
        else:
            _overrides[name] = previous
