# The app image: one image, three commands (deploy/images/app-entrypoint.sh):
#   web      daphne serving agentloop.asgi on :8000
#   worker   the django-q2 cluster (launches runs, reconciles, automations)
#   migrate  database migrations and the recurring tasks' schedules (the migration Job)
#
#   make images        (or: deploy/images/build.sh app; docs/deploy.md)
#
# Build context: the repository root, after deploy/images/wheelhouse.py (var/images/wheels/:
# every dependency of pyproject.toml as wheels, so the build itself needs no package index).
# BASE: a Debian bookworm image (debian:bookworm-slim, or deploy/images/debootstrap-base.sh's).
ARG BASE=docker.io/library/debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive

FROM ${BASE} AS python
ARG DEBIAN_FRONTEND
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

FROM python AS build
ARG DEBIAN_FRONTEND
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv
COPY var/images/wheels/ /wheels/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels \
      -r /wheels/requirements.txt \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall -y -q pip setuptools \
 # The Claude Code CLI (400 MB) runs in the runner image, never in web or worker.
 && rm -f /opt/venv/lib/python3*/site-packages/claude_agent_sdk/_bundled/claude \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +
COPY manage.py /app/
COPY agentloop/ /app/agentloop/
COPY studio/ /app/studio/
COPY swarms/ /app/swarms/
COPY skills/ /app/skills/
COPY templates/ /app/templates/
COPY static/ /app/static/
RUN /opt/venv/bin/python -m compileall -q /opt/venv /app

FROM python
COPY --from=build /opt/venv/ /opt/venv/
COPY --from=build /app/ /app/
COPY deploy/images/app-entrypoint.sh /usr/local/bin/agentloop
RUN groupadd --gid 10001 agentloop \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/agentloop --shell /usr/sbin/nologin agentloop \
 && mkdir -p /var/lib/agentloop && chown 10001:10001 /var/lib/agentloop
ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
    DJANGO_SETTINGS_MODULE=agentloop.settings \
    AGENTLOOP_VAR_DIR=/var/lib/agentloop \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
USER 10001:10001
WORKDIR /app
EXPOSE 8000
ENTRYPOINT ["agentloop"]
CMD ["web"]
