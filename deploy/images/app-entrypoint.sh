#!/bin/sh
# The app image's commands: web, worker, migrate; anything else runs as given
# (e.g. `manage.py createsuperuser`, `manage.py rotate_secrets`).
set -eu
cd /app
case "${1:-web}" in
  web)
    shift || true
    # --proxy-headers: behind the Ingress the client's address and scheme come in X-Forwarded-*.
    exec python -m daphne -b 0.0.0.0 -p "${PORT:-8000}" --proxy-headers "$@" agentloop.asgi:application
    ;;
  worker)
    exec python manage.py qcluster
    ;;
  migrate)
    python manage.py migrate --noinput
    exec python manage.py setup_schedules
    ;;
  manage.py)
    shift
    exec python manage.py "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
