"""An in-memory sandbox provider for tests: records what was asked, starts nothing.

`fake_provider` (a fixture in the test modules that import it) registers it as
"fake" through the sandbox registry (agentloop.runs.providers.override_provider).
"""

from __future__ import annotations

import pytest

from agentloop.runs.providers import override_provider
from agentloop.sandboxes.base import (
    SandboxError,
    SandboxHandle,
    SandboxProvider,
    SandboxSpec,
    SandboxState,
    SandboxStatus,
)


class FakeSandboxProvider(SandboxProvider):
    name = "fake"

    def __init__(self):
        self.started: list[SandboxSpec] = []
        self.states: dict[str, SandboxStatus] = {}
        self.stopped: list[str] = []
        self.cleaned: list[str] = []
        self.fail_start: str | None = None  # message of a SandboxError to raise on start

    def start(self, spec: SandboxSpec) -> SandboxHandle:
        if self.fail_start:
            raise SandboxError(self.fail_start)
        self.started.append(spec)
        sandbox_id = f"fake-{spec.run_code}"
        self.states[sandbox_id] = SandboxStatus(SandboxState.RUNNING)
        return SandboxHandle(provider=self.name, id=sandbox_id, data={"n": len(self.started)})

    def status(self, handle: SandboxHandle) -> SandboxStatus:
        return self.states.get(
            handle.id, SandboxStatus(SandboxState.GONE, detail="no such sandbox")
        )

    def exit(self, handle_id: str, code: int) -> None:
        """Make the sandbox look like its runner ended with `code`."""
        self.states[handle_id] = SandboxStatus(SandboxState.EXITED, exit_code=code)

    def stop(self, handle: SandboxHandle) -> None:
        self.stopped.append(handle.id)
        if handle.id in self.states:
            self.states[handle.id] = SandboxStatus(SandboxState.EXITED, exit_code=-15)

    def cleanup(self, handle: SandboxHandle) -> None:
        self.cleaned.append(handle.id)
        self.states.pop(handle.id, None)


@pytest.fixture
def fake_provider():
    with override_provider("fake", FakeSandboxProvider()) as provider:
        yield provider
