# The runner image: what each Kubernetes sandbox pod runs (agentloop/sandboxes/kubernetes.py):
# Python 3, git, the runner (standard library only) and the pinned Claude Code CLI.
#
#   make images        (or: deploy/images/build.sh runner; docs/deploy.md)
#
# Build context: the repository root, after deploy/images/wheelhouse.py (var/images/wheels/
# holds the claude-agent-sdk wheel the CLI is taken from, the version pyproject.toml pins).
# BASE: a Debian bookworm image (debian:bookworm-slim, or deploy/images/debootstrap-base.sh's).
# WITH_CLAUDE=0 leaves the CLI out: an analyst-only image, 400 MB smaller.
ARG BASE=docker.io/library/debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive

FROM ${BASE} AS python
ARG DEBIAN_FRONTEND
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 git ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
# uid 1000, as the pod's securityContext and the local sandbox run it (Claude Code refuses root).
RUN groupadd --gid 1000 agent \
 && useradd --uid 1000 --gid 1000 --home-dir /home/agent --no-create-home --shell /bin/sh agent

FROM python AS claude
ARG WITH_CLAUDE=1
COPY var/images/wheels/ /wheels/
RUN mkdir -p /opt/claude \
 && if [ "$WITH_CLAUDE" = 1 ]; then \
      python3 -c 'import glob, shutil, sys, zipfile; \
wheel = zipfile.ZipFile(sorted(glob.glob("/wheels/claude_agent_sdk-*.whl"))[-1]); \
shutil.copyfileobj(wheel.open("claude_agent_sdk/_bundled/claude"), open("/opt/claude/claude", "wb"))' \
      && chmod 0755 /opt/claude/claude; \
    fi

FROM python
COPY --from=claude /opt/claude/ /opt/claude/
COPY agentloop/__init__.py /opt/agentloop/agentloop/__init__.py
COPY agentloop/runner/ /opt/agentloop/agentloop/runner/
# Compiled now: the pod's root file system is read-only, so Python could not cache them.
RUN python3 -m compileall -q /opt/agentloop \
 && mkdir -p /workspace /home/agent && chown 1000:1000 /workspace /home/agent
ENV PATH=/opt/claude:/usr/local/bin:/usr/bin:/bin \
    PYTHONPATH=/opt/agentloop \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    HOME=/home/agent \
    AGENTLOOP_WORKSPACE=/workspace
USER 1000:1000
WORKDIR /workspace
CMD ["python3", "-m", "agentloop.runner"]
