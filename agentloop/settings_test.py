"""Settings for the test suite: the real settings with test-only secrets.

DATABASE_URL and REDIS_URL still come from the environment, so the same suite
runs on SQLite (default) and PostgreSQL (`make test` runs both).
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("AGENTLOOP_DERIVE_FERNET_KEY", "1")

from agentloop.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
ALLOWED_HOSTS = ["*"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# django-q2 runs tasks inline in tests: async_task() calls the function at once.
Q_CLUSTER = {**Q_CLUSTER, "sync": True}  # noqa: F405
