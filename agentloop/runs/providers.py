"""The one place runs look up sandbox providers by name.

Everything in runs (config validation, launch, reconcile) goes through here, so
the registry (agentloop/sandboxes/registry.py) is consulted in one way only.
Tests slot in an in-memory provider with `override_provider` (tests/fake_sandbox.py).
"""

from __future__ import annotations

from agentloop.sandboxes import registry
from agentloop.sandboxes.base import SandboxProvider

override_provider = registry.override_provider


def get_provider(name: str) -> SandboxProvider:
    return registry.get_provider(name)


def provider_names() -> set[str]:
    """Names a run's config may ask for, without building any provider."""
    if hasattr(registry, "provider_names"):
        return set(registry.provider_names())
    return set(registry._FACTORIES)  # the registry keeps its names here
