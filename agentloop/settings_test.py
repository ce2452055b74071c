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

# On SQLite the test database is a file, not Django's default in-memory one.
# Tests that serve the app from daphne or a live server read and write from
# several threads at once; an in-memory database is shared-cache, where a
# reader of a table being written gets "database table is locked" at once,
# while a file in WAL mode behaves as production does (readers never wait,
# writers wait up to the busy timeout). One file per test process, so two
# runs of the suite on one machine do not share it.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")  # noqa: F405
    }
