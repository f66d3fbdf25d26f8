"""Tollgate settings, read from the environment (django-environ).

Two shapes of the same code:

* embedded default (``DEBUG=true``, no ``DATABASE_URL`` / ``REDIS_URL``): SQLite, local-memory
  cache and a filesystem Celery broker, all under ``VAR_DIR`` (``./var``);
* production (``DEBUG=false``): ``SECRET_KEY``, ``ENCRYPTION_KEYS`` and ``ALLOWED_HOSTS`` must
  be set or the process refuses to start; PostgreSQL and Redis come from ``DATABASE_URL`` and
  ``REDIS_URL``.

Every setting is documented in ``.env.example``.
"""

import os
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from sso.rules import RuleError, rules_parse

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env (written by `make run` on first start) fills what the process environment leaves
# unset; real environment variables always win. ENV_FILE points elsewhere (or at /dev/null).
ENV_FILE = Path(environ.Env().str("ENV_FILE", default=str(BASE_DIR / ".env")))
if ENV_FILE.is_file():
    environ.Env.read_env(ENV_FILE, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))


def _required_in_production(name: str, dev_default: str) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} must be set when DEBUG is false (production). See .env.example."
    )


SECRET_KEY = _required_in_production(
    "SECRET_KEY", "dev-insecure-secret-key-only-for-debug-mode-0123456789abcdefghijklmnop"
)
# Fernet keys for provider credentials, newest first, comma separated. The first one encrypts;
# all of them decrypt (MultiFernet), which is what `rotate_encryption_key` relies on.
ENCRYPTION_KEYS = [
    k.strip()
    for k in _required_in_production(
        "ENCRYPTION_KEYS", "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzJieXRlcyE="
    ).split(",")
    if k.strip()
]

if DEBUG:
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
else:
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS must be set when DEBUG is false (production), e.g. "
            "ALLOWED_HOSTS=tollgate.example.com. See .env.example."
        )
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "config",  # the project's own management commands (config/apps.py); no models
    "tenants",
    "providers",
    "billing",
    "tenantconfig",  # a tenant's configuration as one file; no models
    "sso",  # OpenID Connect login (mozilla-django-oidc); SSO identities
    "support",  # last: its post_migrate receiver needs every app's permissions
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "builtins": ["billing.templatetags.money", "tenants.templatetags.console_access"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "sso.context.sso",  # the "Sign in with ..." button of the login pages
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
_sqlite_path = VAR_DIR / "tollgate.sqlite3"
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{_sqlite_path}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the Celery worker and beat share one file: WAL lets readers run beside
    # the single writer, IMMEDIATE transactions avoid lock-upgrade deadlocks, and a writer
    # waits up to 20 s for the lock instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, shared counters, Celery broker --------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# Longest wait for Redis to connect or to answer one command (seconds): a slow or overloaded
# Redis is treated like one that is down (the data plane's outage handling, GATEWAY_REDIS_OUTAGE).
REDIS_TIMEOUT_SECONDS = env.float("REDIS_TIMEOUT_SECONDS", default=2.0)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "tg",
            "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT_SECONDS, "socket_timeout": REDIS_TIMEOUT_SECONDS},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "tollgate",
        }
    }

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- Auth, API ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out username or address
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/app/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Brute-force protection of both login pages (django-axes; config/lockout.py): after this many
# failed logins, the username and, separately, the client address are locked out...
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
# ...for this many minutes after the last failure (0: until staff unlock, `manage.py axes_reset*`).
LOGIN_LOCKOUT_MINUTES = env.int("LOGIN_LOCKOUT_MINUTES", default=15)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES) if LOGIN_LOCKOUT_MINUTES else None
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "config.lockout.client_address"
AXES_LOCKOUT_CALLABLE = "config.lockout.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
AXES_DISABLE_ACCESS_LOG = True  # record failures only, not every successful login

# --- Single sign-on (OpenID Connect; sso/, README "Single sign-on") ---------------------------
# Off unless OIDC_ISSUER is set; the password login stays in every case. The issuer's discovery
# document ({issuer}/.well-known/openid-configuration) is read on the first SSO login, not here.
OIDC_ISSUER = env.str("OIDC_ISSUER", default="").strip().rstrip("/")
OIDC_ENABLED = bool(OIDC_ISSUER)
OIDC_RP_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="").strip()
OIDC_RP_CLIENT_SECRET = env.str("OIDC_CLIENT_SECRET", default="")
if OIDC_ENABLED and not (OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET):
    raise ImproperlyConfigured(
        "OIDC_ISSUER is set: OIDC_CLIENT_ID and OIDC_CLIENT_SECRET must be set too (from the "
        "client registered at the identity provider), or unset OIDC_ISSUER to turn SSO off."
    )
if OIDC_ENABLED and not re.match(r"^https://|^http://(127\.0\.0\.1|localhost)[:/]", OIDC_ISSUER + "/"):
    raise ImproperlyConfigured(f"OIDC_ISSUER must be an https:// URL (got {OIDC_ISSUER}).")
# The name on the login pages' "Sign in with <name>" button (default: the issuer's host name).
OIDC_PROVIDER_NAME = env.str("OIDC_PROVIDER_NAME", default="").strip() or (urlsplit(OIDC_ISSUER).hostname or "")
OIDC_RP_SCOPES = env.str("OIDC_SCOPES", default="openid email profile").strip()
if OIDC_ENABLED and "openid" not in OIDC_RP_SCOPES.split():
    raise ImproperlyConfigured(f"OIDC_SCOPES must include openid (got '{OIDC_RP_SCOPES}').")
# Mapping rules (sso/rules.py): email domain -> tenant:role or tenant/project:role (verified
# emails only), and group of the OIDC_GROUPS_CLAIM claim -> the same; OIDC_STAFF_GROUP makes
# Django staff superusers, OIDC_SUPPORT_GROUP support staff (the support group). Applied on
# every SSO login, which also takes back what the rules granted and no longer give.
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups").strip()
try:
    OIDC_DOMAIN_RULES = rules_parse("OIDC_DOMAIN_RULES", env.str("OIDC_DOMAIN_RULES", default=""), domains=True)
    OIDC_GROUP_RULES = rules_parse("OIDC_GROUP_RULES", env.str("OIDC_GROUP_RULES", default=""))
except RuleError as exc:
    raise ImproperlyConfigured(str(exc)) from None
OIDC_STAFF_GROUP = env.str("OIDC_STAFF_GROUP", default="").strip()
OIDC_SUPPORT_GROUP = env.str("OIDC_SUPPORT_GROUP", default="").strip()
# An SSO login's session ends this long after the login, active or not (password logins keep
# Django's two weeks): then the person signs in again and the rules are applied again, so
# someone removed at the identity provider keeps the console at most this long. Default 10
# hours, a working day.
OIDC_SESSION_SECONDS = env.int("OIDC_SESSION_SECONDS", default=10 * 3600)
if OIDC_SESSION_SECONDS < 300:
    raise ImproperlyConfigured(
        f"OIDC_SESSION_SECONDS must be at least 300 (5 minutes); got {OIDC_SESSION_SECONDS}."
    )
# What mozilla-django-oidc needs besides: ID tokens signed with RS256 and checked against the
# issuer's JWKS (sso/backends.py also checks iss, aud, exp, iat), a nonce and PKCE on every
# login, tokens kept out of the session, a 10 s limit on each call to the issuer.
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_USE_NONCE = True
OIDC_USE_PKCE = True
OIDC_VERIFY_KID = True
OIDC_ALLOW_UNSECURED_JWT = False
OIDC_STORE_ACCESS_TOKEN = False
OIDC_STORE_ID_TOKEN = False
OIDC_TIMEOUT = env.float("OIDC_TIMEOUT", default=10.0)
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"
OIDC_REDIRECT_FIELD_NAME = "next"
LOGIN_REDIRECT_URL_FAILURE = LOGIN_URL
# Acts only on the SSO callback. First, before axes: a sign-in the issuer vouched for is not a
# password guess (refused ones still count as failures of the client address).
AUTHENTICATION_BACKENDS.insert(0, "sso.backends.SSOBackend")

# Data-plane workers remember verified keys and tenants' routing tables until the tenant's
# configuration changes (seen on the next request, through Redis); these are the backstops for a
# change that could not be published, and the only bound on the embedded default (no Redis) for
# changes made by another process. Unknown keys are remembered for API_KEY_CACHE_SECONDS.
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=60 if REDIS_URL else 5)
# Most verified keys / unknown key hashes a worker remembers (least recently used go first).
API_KEY_CACHE_SIZE = env.int("API_KEY_CACHE_SIZE", default=100_000)
API_KEY_NEGATIVE_CACHE_SIZE = env.int("API_KEY_NEGATIVE_CACHE_SIZE", default=10_000)
# Failed /v1 authentications from one client address per minute before it gets 429 for the rest
# of the minute (keys already verified on the worker keep working).
GATEWAY_AUTH_FAILURES_PER_MINUTE = env.int("GATEWAY_AUTH_FAILURES_PER_MINUTE", default=30)
# last_used_at is written at most once per key per this many seconds (one UPDATE, not one per request).
API_KEY_TOUCH_SECONDS = env.int("API_KEY_TOUCH_SECONDS", default=60)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.auth.BearerKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "tenants.auth.IsManagementPrincipal",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "core.drf.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tollgate management API",
    "DESCRIPTION": "Tenants, API keys, providers, aliases, budgets and usage.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "KeyScopeEnum": "tenants.models.KeyScope",
        "RoleEnum": "tenants.models.Role",
        "ProjectRoleEnum": "tenants.models.PROJECT_ROLE_CHOICES",
        "BudgetScopeEnum": "billing.models.BudgetScope",
    },
}

# --- Providers --------------------------------------------------------------------------------
# Provider base URLs on private or loopback addresses (a local Ollama, vLLM) are refused unless
# this is on; link-local and cloud-metadata addresses are always refused. On in DEBUG.
ALLOW_PRIVATE_PROVIDER_URLS = env.bool("ALLOW_PRIVATE_PROVIDER_URLS", default=DEBUG)
# Attribution headers sent to OpenRouter (HTTP-Referer, X-Title).
OPENROUTER_SITE_URL = env.str("OPENROUTER_SITE_URL", default="")
OPENROUTER_APP_NAME = env.str("OPENROUTER_APP_NAME", default="Tollgate")
# Largest catalog answer accepted from a provider, in bytes.
PROVIDER_MAX_RESPONSE_BYTES = env.int("PROVIDER_MAX_RESPONSE_BYTES", default=20 * 1024 * 1024)
# A sync still "running" after this many seconds is presumed dead and may be claimed again.
PROVIDER_SYNC_STALE_SECONDS = env.int("PROVIDER_SYNC_STALE_SECONDS", default=600)

# --- Platform defaults for new tenants -------------------------------------------------------
# The environment variables of the seed's tenant-settings dialect (README "The seed's
# tenant-settings dialect"). tenant_create copies them into every tenant it creates; a tenant
# changes its own later (PUT /api/tenants/{id}); existing tenants are not touched.
def _env_name(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def _in_range(name: str, value, low, high):
    if value is not None and not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be between {low} and {high}, not {value}.")
    return value


# The default model of new tenants: LLM_PROVIDER (a platform provider's name or type: openai,
# anthropic, ollama, ...) and its model from <PROVIDER>_MODEL (OPENAI_MODEL, ANTHROPIC_MODEL,
# OLLAMA_MODEL, GEMINI_MODEL, ...).
LLM_PROVIDER = env.str("LLM_PROVIDER", default="").strip()
LLM_MODEL = env.str(f"{_env_name(LLM_PROVIDER)}_MODEL", default="").strip() if LLM_PROVIDER else ""
if LLM_PROVIDER and not LLM_MODEL:
    raise ImproperlyConfigured(
        f"LLM_PROVIDER={LLM_PROVIDER} names no model: set {_env_name(LLM_PROVIDER)}_MODEL (e.g. "
        f"OPENAI_MODEL=gpt-4o-mini), or unset LLM_PROVIDER."
    )
# Their temperature (0-2) and max_tokens defaults.
LLM_TEMPERATURE = _in_range("LLM_TEMPERATURE", env.float("LLM_TEMPERATURE", default=None), 0, 2)
LLM_MAX_TOKENS = _in_range("LLM_MAX_TOKENS", env.int("LLM_MAX_TOKENS", default=None), 1, 10_000_000)
# Timeout (LLM_TIMEOUT, in milliseconds as the seed writes it; stored in seconds) and retries of
# every provider created without its own (a tenant's, or a platform one): Tollgate times and
# retries per provider (an alias may set its own), not per tenant.
LLM_TIMEOUT_SECONDS = _in_range("LLM_TIMEOUT", env.int("LLM_TIMEOUT", default=None), 500, 600_000)
LLM_TIMEOUT_SECONDS = LLM_TIMEOUT_SECONDS / 1000 if LLM_TIMEOUT_SECONDS is not None else None
LLM_MAX_RETRIES = _in_range("LLM_MAX_RETRIES", env.int("LLM_MAX_RETRIES", default=None), 0, 10)
# The default embeddings model of new tenants: EMBEDDINGS_PROVIDER and EMBEDDINGS_MODEL; the seed's
# OPENAI_EMBEDDING_MODEL alone means openai's.
OPENAI_EMBEDDING_MODEL = env.str("OPENAI_EMBEDDING_MODEL", default="").strip()
EMBEDDINGS_PROVIDER = env.str("EMBEDDINGS_PROVIDER", default="").strip() or ("openai" if OPENAI_EMBEDDING_MODEL else "")
EMBEDDINGS_MODEL = env.str("EMBEDDINGS_MODEL", default="").strip() or (
    OPENAI_EMBEDDING_MODEL if EMBEDDINGS_PROVIDER == "openai" else "")
if EMBEDDINGS_PROVIDER and not EMBEDDINGS_MODEL:
    raise ImproperlyConfigured(f"EMBEDDINGS_PROVIDER={EMBEDDINGS_PROVIDER} names no model: set EMBEDDINGS_MODEL.")

# --- Billing ----------------------------------------------------------------------------------
# USD per tenant per local day: a tenant whose known cost today reaches it gets an alert email
# (owners and admins), with or without a budget. Empty or 0 = off.
COST_ALERT_THRESHOLD = Decimal(env.str("COST_ALERT_THRESHOLD", default="") or "0") or None
# Days the ledger keeps a request row (tenants may set their own); daily rollups are kept, but
# for the end-user rollup, which grows with every end user: END_USER_ROLLUP_RETENTION_DAYS, for
# every tenant, at least 62 (end-user budgets are rebuilt from it; billing/retention.py).
USAGE_RETENTION_DAYS = env.int("USAGE_RETENTION_DAYS", default=400)
END_USER_ROLLUP_RETENTION_DAYS = env.int("END_USER_ROLLUP_RETENTION_DAYS", default=400)
if END_USER_ROLLUP_RETENTION_DAYS < 62:
    raise ImproperlyConfigured(
        f"END_USER_ROLLUP_RETENTION_DAYS must be at least 62 days (got {END_USER_ROLLUP_RETENTION_DAYS}): end-user "
        "budgets (day, week, calendar month, rolling 30 days) are rebuilt from the end-user rollup.")

# --- Gateway (/v1 data plane) ---------------------------------------------------------------
# Backstop: seconds a worker keeps a tenant's routing table at most (see API_KEY_CACHE_SECONDS).
GATEWAY_CONFIG_SECONDS = env.float("GATEWAY_CONFIG_SECONDS", default=60.0 if REDIS_URL else 5.0)
# Output tokens a budget reservation counts for a request that sets no limit, on a model whose
# context length the catalog does not know.
GATEWAY_DEFAULT_OUTPUT_TOKENS = env.int("GATEWAY_DEFAULT_OUTPUT_TOKENS", default=32_768)
# Failures of one deployment inside GATEWAY_FAIL_WINDOW_SECONDS before it cools down, and for
# how long (aliases set their own).
GATEWAY_ALLOWED_FAILS = env.int("GATEWAY_ALLOWED_FAILS", default=3)
GATEWAY_COOLDOWN_SECONDS = env.int("GATEWAY_COOLDOWN_SECONDS", default=60)
GATEWAY_FAIL_WINDOW_SECONDS = env.int("GATEWAY_FAIL_WINDOW_SECONDS", default=60)
# Longest retry-after from an upstream that is waited out before retrying (seconds).
GATEWAY_RETRY_AFTER_CAP = env.float("GATEWAY_RETRY_AFTER_CAP", default=5.0)
# How often a worker writes its buffered usage rows (seconds) and the most per write.
GATEWAY_USAGE_FLUSH_SECONDS = env.float("GATEWAY_USAGE_FLUSH_SECONDS", default=0.2)
GATEWAY_USAGE_BATCH = env.int("GATEWAY_USAGE_BATCH", default=1000)
# The usage journal (billing/journal.py): each worker appends every usage record to a file on
# local disk before the request's last bytes go out, so a worker killed outright (kill -9, the
# OOM killer) loses none; the next worker, or the billing.journals_sweep task, writes a dead
# worker's journal and releases the budget reservations it still held. Off: records wait in
# memory only, and a shutdown with the database down spools them (VAR_DIR/usage-spool). The
# directory (empty: VAR_DIR/journal) must be on a local disk, not a network share (its locks are
# the local kernel's).
GATEWAY_JOURNAL = env.bool("GATEWAY_JOURNAL", default=True)
GATEWAY_JOURNAL_DIR = env.str("GATEWAY_JOURNAL_DIR", default="")
# 0: never fsync (what is written survives the process's death, not the machine's); N > 0: a
# thread fsyncs the journal at most every N ms, so a machine loss loses at most the last N ms.
GATEWAY_JOURNAL_FSYNC_MS = env.int("GATEWAY_JOURNAL_FSYNC_MS", default=0)
# What /v1 does while Redis (rate limits, budgets) cannot be reached: "closed" answers 503
# store_unavailable (nothing is served without admission); "open" serves tenants that have no
# block budget without rate limits, their spend added to the budgets once Redis is back. A
# tenant may choose its own (Tenant.redis_outage); a tenant with a block budget always fails closed.
GATEWAY_REDIS_OUTAGE = env.str("GATEWAY_REDIS_OUTAGE", default="closed")
if GATEWAY_REDIS_OUTAGE not in ("closed", "open"):
    raise ImproperlyConfigured(f"GATEWAY_REDIS_OUTAGE must be 'closed' or 'open', not {GATEWAY_REDIS_OUTAGE!r}.")

# Request bodies larger than this are refused with 413, on every route, counted as the bytes
# arrive (chunked bodies too): config/bodylimit.py wraps the ASGI application.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BYTES", default=4 * 1024 * 1024)

# --- i18n, static ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG
if DEBUG:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on a missing root

# --- Mail -----------------------------------------------------------------------------------
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="tollgate@localhost")

# --- Security (production) ------------------------------------------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading is the domain owner's decision (it is hard to undo), so it stays off
        # unless asked for, and the check that nags about it is silenced.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SECURE_CONTENT_TYPE_NOSNIFF = True

# --- Metrics --------------------------------------------------------------------------------
# prometheus-client multi-process mode: each worker writes here; empty it before a deployment
# starts its workers (`manage.py reset_metrics`, which `make run` does).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus"))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", PROMETHEUS_MULTIPROC_DIR)
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
# GET /metrics answers a request bearing this token, or (without a token) these client IPs.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# json: one JSON object per line (production default); plain: readable lines (development).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
# One structured line per /v1 request (logger tollgate.requests).
GATEWAY_REQUEST_LOG = env.bool("GATEWAY_REQUEST_LOG", default=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own console handler would print every line a second time.
        "django": {"handlers": [], "propagate": True, "level": LOG_LEVEL},
        "django.db.backends": {"level": "WARNING"},
    },
}
