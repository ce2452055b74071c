"""Settings for agentloop, read from the environment.

Embedded default: SQLite under var/, in-memory channel layer, django-q2 ORM
broker. Production: DATABASE_URL (PostgreSQL) and REDIS_URL (channel layer and
q2 broker). The same code serves both; only these variables differ.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from agentloop import private_files
from agentloop.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("AGENTLOOP_VAR_DIR", str(BASE_DIR / "var")))
private_files.make_private_dir(VAR_DIR)  # 0700, its files 0600 (agentloop/private_files.py)

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (or SECRET_KEY_FILE) in production, "
            "or DEBUG=1 for a local development server."
        )
    # Development only: a random key kept under var/ so sessions survive restarts.
    path = VAR_DIR / "dev_secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# Keys for secrets encrypted at rest (MultiFernet). Several, comma separated; the
# first encrypts, all decrypt, so keys can be rotated. In development a key is
# derived from SECRET_KEY so a fresh clone works without configuration.
FERNET_KEYS = env_list("AGENTLOOP_FERNET_KEYS")
if not FERNET_KEYS:
    if not DEBUG and not env_bool("AGENTLOOP_DERIVE_FERNET_KEY", False):
        raise ImproperlyConfigured(
            "AGENTLOOP_FERNET_KEYS is not set. Generate one with "
            "`python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`."
        )
    FERNET_KEYS = [base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from here: no CDN
    "guardian",
    "django_htmx",
    "django_q",
    "channels",
    "template_partials",
    "axes",
    "agentloop",
    # Domain apps, lowest layer first (docs/architecture.md: the dependency rule).
    "agentloop.teams",
    "agentloop.traces",
    "agentloop.skills",
    "agentloop.runs",
    "agentloop.presets",
    "agentloop.automations",
    "agentloop.signal",
    "agentloop.review",
    "agentloop.comparisons",
    # Pages.
    "studio",
    "swarms",
    "skills",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "agentloop.security_headers.SecurityHeadersMiddleware",  # CSP, Permissions-Policy
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "agentloop.teams.timezones.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into its page
]

ROOT_URLCONF = "agentloop.urls"
ASGI_APPLICATION = "agentloop.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # One way to write times, durations, counts and money on every page.
            "builtins": ["agentloop.teams.templatetags.formatting"],
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'agentloop.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the q2 worker writes; a busy timeout
    # makes writers wait for each other instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        # journal_size_limit: a WAL that starts over is cut back to 64 MiB
        # (traces/sqlite_wal.py keeps it from growing past that under bursts).
        # mmap_size: reads map the file instead of copying each page through a
        # read() call; a connection lasts one request here (CONN_MAX_AGE 0), so
        # SQLite's own page cache starts cold every time, while the mapped pages
        # stay in the OS's cache. Analytics over a million spans reads ~2-3x
        # faster (docs/benchmarks.md). SQLite caps the size at its build's limit.
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
            "PRAGMA journal_size_limit=67108864; PRAGMA mmap_size=2147418112;"
        ),
    }
    private_files.create_private_file(Path(DATABASES["default"]["NAME"]))  # before SQLite's 0644
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before the rest
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row; anonymous sees nothing.
LOGIN_URL = "login"
# Login throttling (django-axes, agentloop/login_throttle.py): AXES_FAILURE_LIMIT
# wrong passwords in a row for one account, or from one address, lock that
# account or address for AXES_COOLOFF_MINUTES; a success resets the count.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "agentloop.login_throttle.locked_out"
# Behind a reverse proxy, the client address is the proxy's unless Daphne is told
# to read X-Forwarded-For (README: production).
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve straight from static/ without collectstatic
MEDIA_ROOT = VAR_DIR / "media"

# Analytics over long windows reads the worker's span rollups (traces/rollups.py);
# off: every answer reads the spans (same numbers, slower).
ANALYTICS_ROLLUPS = env_bool("AGENTLOOP_ANALYTICS_ROLLUPS", True)

# Where sandboxes reach the web process (runner API, span API, LLM gateway).
AGENTLOOP_PUBLIC_URL = env_str("AGENTLOOP_PUBLIC_URL", "http://127.0.0.1:8000")
# Pull requests (agentloop/runs/github.py): GitHub Enterprise is https://<host>/api/v3.
AGENTLOOP_GITHUB_API_URL = env_str("AGENTLOOP_GITHUB_API_URL", "https://api.github.com")
# Let presets name file:// repositories (tests, local mirrors); off: only https://.
AGENTLOOP_ALLOW_FILE_REPOSITORIES = env_bool("AGENTLOOP_ALLOW_FILE_REPOSITORIES", False)
# LLM gateway (docs/gateway.md): the Anthropic-compatible upstream it forwards to,
# and the real key it adds (never sent to a sandbox; _FILE variant for secrets).
AGENTLOOP_LLM_UPSTREAM_URL = env_str("AGENTLOOP_LLM_UPSTREAM_URL", "https://api.anthropic.com")
AGENTLOOP_ANTHROPIC_API_KEY = env_str("AGENTLOOP_ANTHROPIC_API_KEY", "")
# The same for OpenAI (Responses, Chat Completions: Codex, OpenCode) and Gemini (Gemini CLI).
AGENTLOOP_OPENAI_UPSTREAM_URL = env_str("AGENTLOOP_OPENAI_UPSTREAM_URL", "https://api.openai.com")
AGENTLOOP_OPENAI_API_KEY = env_str("AGENTLOOP_OPENAI_API_KEY", "")
AGENTLOOP_GEMINI_UPSTREAM_URL = env_str(
    "AGENTLOOP_GEMINI_UPSTREAM_URL", "https://generativelanguage.googleapis.com"
)
AGENTLOOP_GEMINI_API_KEY = env_str("AGENTLOOP_GEMINI_API_KEY", "")
# The harness CLIs (codex, opencode, gemini), installed by `make harness-cli` with npm;
# local sandboxes bind it read-only at /opt/harness-cli (docs/harnesses.md).
HARNESS_CLI_DIR = Path(env_str("AGENTLOOP_HARNESS_CLI_DIR", str(VAR_DIR / "harness-cli")))
# The model Signal's Claude Code preset uses when a key is set ("" = the default model).
AGENTLOOP_SIGNAL_MODEL = env_str("AGENTLOOP_SIGNAL_MODEL", "")
# Per-run workspaces of the local (bubblewrap) sandbox provider.
SANDBOX_ROOT = Path(env_str("AGENTLOOP_SANDBOX_ROOT", str(VAR_DIR / "sandboxes")))
SANDBOX_PROVIDER_DEFAULT = env_str("AGENTLOOP_SANDBOX_PROVIDER", "local")
# Local provider (docs/sandboxes.md): extra read-only binds "host:sandbox", the
# unprivileged host uid bwrap runs as when we are root, SIGTERM→SIGKILL grace.
SANDBOX_RO_BINDS = env_list("AGENTLOOP_SANDBOX_RO_BINDS")
SANDBOX_HOST_UID = env_int("AGENTLOOP_SANDBOX_HOST_UID", 1000)
SANDBOX_STOP_GRACE_SECONDS = env_int("AGENTLOOP_SANDBOX_STOP_GRACE_SECONDS", 10)
# var/ is 0711 instead of 0700 only when that sandbox uid must pass through it.
VAR_DIR.chmod(
    private_files.var_dir_mode(
        VAR_DIR, SANDBOX_ROOT, SANDBOX_HOST_UID if os.geteuid() == 0 else None
    )
)
# The egress proxy (docs/sandboxes.md): private networks it may reach (loopback never),
# e.g. "10.1.2.0/24" for an in-house git server.
SANDBOX_EGRESS_PRIVATE_NETWORKS = env_list("AGENTLOOP_SANDBOX_EGRESS_PRIVATE_NETWORKS")
# Kubernetes provider: kubeconfig context (empty: in-cluster config), namespace,
# runner image, optional RuntimeClass (gvisor, kata) for a stronger boundary.
K8S_CONTEXT = env_str("AGENTLOOP_K8S_CONTEXT", "")
K8S_NAMESPACE = env_str("AGENTLOOP_K8S_NAMESPACE", "agentloop-runs")
K8S_IMAGE = env_str("AGENTLOOP_K8S_IMAGE", "ghcr.io/agentloop/runner:latest")
K8S_RUNTIME_CLASS = env_str("AGENTLOOP_K8S_RUNTIME_CLASS", "")
# A NetworkPolicy per run pod (docs/deploy.md): runner-only runs reach the web pods,
# the cluster DNS and an optional egress proxy, each NAMESPACE/LABEL=VALUE[,…]:PORT.
K8S_NETWORK_POLICY = env_bool("AGENTLOOP_K8S_NETWORK_POLICY", True)
K8S_WEB_PEER = env_str(
    "AGENTLOOP_K8S_WEB_PEER",
    "agentloop/app.kubernetes.io/name=agentloop,app.kubernetes.io/component=web:8000",
)
K8S_DNS_PEER = env_str("AGENTLOOP_K8S_DNS_PEER", "kube-system/k8s-app=kube-dns:53")
K8S_EGRESS_PROXY_PEER = env_str("AGENTLOOP_K8S_EGRESS_PROXY_PEER", "")
K8S_SECCOMP_PROFILE = env_str("AGENTLOOP_K8S_SECCOMP_PROFILE", "")  # Localhost profile path

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# django-q2, set explicitly: a task may run `timeout` seconds; a task not
# acknowledged after `retry` seconds is handed out again (retry > timeout so a
# slow task is never run twice at once); give up after `max_attempts`.
Q_CLUSTER = {
    "name": "agentloop",
    "workers": env_int("Q_WORKERS", 2),
    "timeout": env_int("Q_TIMEOUT", 300),
    "retry": env_int("Q_RETRY", 360),
    "max_attempts": env_int("Q_MAX_ATTEMPTS", 3),
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 1000,
    "poll": 0.5,
    "label": "Tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "agentloop.teams.authentication.ProjectApiKeyAuthentication",
        "agentloop.runs.authentication.ServiceKeyAuthentication",
        "agentloop.teams.authentication.PersonalTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "agentloop API",
    "DESCRIPTION": "Traces, annotations, sessions, presets, skills, automations, Signal "
    "and review of agentloop (docs/api.md).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs pages' scripts and styles come from this server's static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No badge from the public validator service: nothing loads from outside.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "ENUM_NAME_OVERRIDES": {
        "RunKindEnum": "agentloop.runs.models.RunKind",
        "RunTriggerEnum": "agentloop.runs.models.RunTrigger",
        "ArtifactKindEnum": "agentloop.runs.models.ArtifactKind",
        "SpanKindEnum": "agentloop.traces.models.SpanKind",
        "AutomationTriggerEnum": "agentloop.automations.models.Automation.TRIGGER_CHOICES",
    },
}

# Failed key authentication on the APIs (agentloop/key_throttle.py): an address
# whose keys were refused this many times within the window gets 429 until it ends.
KEY_FAILURE_LIMIT = env_int("AGENTLOOP_KEY_FAILURE_LIMIT", 20)
KEY_FAILURE_WINDOW_SECONDS = env_int("AGENTLOOP_KEY_FAILURE_WINDOW_SECONDS", 300)
# Not counted: local sandboxes all come from loopback (their bridge), see key_throttle.py.
KEY_THROTTLE_EXEMPT = env_list("AGENTLOOP_KEY_THROTTLE_EXEMPT", ["127.0.0.0/8", "::1/128"])

# OTLP ingest: the largest request body accepted, after gzip decompression too.
OTLP_MAX_BODY_BYTES = env_int("OTLP_MAX_BODY_BYTES", 16 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = OTLP_MAX_BODY_BYTES

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
X_FRAME_OPTIONS = "DENY"
# TLS (README: production). Behind a proxy that ends TLS, SECURE_PROXY_SSL_HEADER=1
# trusts its X-Forwarded-Proto: https; HSTS and the redirect to https are for
# when the site is served over https only. Machine clients under /api/ and the
# plain ASGI paths are never redirected: they are configured with the URL to use
# (a sandbox reaches the web process over loopback).
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^api/"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
