"""The runner's own token, kept from the agent it runs. Standard library only.

The runner and the agent share a sandbox, a uid and a pid namespace. The run
token (`al_sk_…`, scopes to read the spec and post as the runner) must stay
with the runner; the harness — and so the agent and every process it starts —
gets the run's harness key instead (AGENTLOOP_HARNESS_KEY: the span API and the
LLM gateway, nothing else), as AGENTLOOP_RUN_TOKEN, where the traces CLI and the
Claude Code harness look for a key.

- `take_run_token()` takes the token from a pipe (AGENTLOOP_RUN_TOKEN_FD; the
  local provider writes it there so it is in no environment and in no memory of
  bwrap's) or from AGENTLOOP_RUN_TOKEN (Kubernetes), and removes both from the
  environment, so no child inherits them.
- `make_undumpable()` marks the runner's process not dumpable: /proc/<pid>/environ,
  mem and fd become root's, and ptrace is refused (the seccomp filter refuses it
  too), so the agent cannot read the token out of the runner.
"""

from __future__ import annotations

import ctypes
import os

TOKEN = "AGENTLOOP_RUN_TOKEN"
TOKEN_FD = "AGENTLOOP_RUN_TOKEN_FD"
HARNESS_KEY = "AGENTLOOP_HARNESS_KEY"
PR_SET_DUMPABLE = 4


def take_run_token(env: dict[str, str]) -> str:
    """The run token, once; afterwards neither `env` nor os.environ holds it or its fd."""
    token = ""
    fd_text = env.pop(TOKEN_FD, "") or os.environ.get(TOKEN_FD, "")
    if fd_text.isdigit():
        fd = int(fd_text)
        try:
            chunks = []
            while chunk := os.read(fd, 4096):
                chunks.append(chunk)
            token = b"".join(chunks).decode().strip()
        except OSError:
            token = ""
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
    token = token or env.get(TOKEN, "").strip()
    for name in (TOKEN, TOKEN_FD):
        env.pop(name, None)
        os.environ.pop(name, None)
    return token


def make_undumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0); False where it is not available (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def harness_environment(env: dict[str, str]) -> dict[str, str]:
    """The harness's environment: the harness key in the run token's place, never the token."""
    clean = {k: v for k, v in env.items() if k not in (TOKEN, TOKEN_FD, HARNESS_KEY)}
    if env.get(HARNESS_KEY):
        clean[TOKEN] = env[HARNESS_KEY]
    return clean
