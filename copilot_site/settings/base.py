"""Settings shared by every profile.

Everything is read from the environment through django-environ. With no
environment at all the site boots in *embedded* mode: a SQLite file under
``var/``, the embedded Redis server that ``make run`` starts on loopback, one
Celery worker, and the built-in offline demo model. Production changes only
environment variables (see README, "Configuration").
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from kombu import Exchange, Queue

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()

if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    env.read_env(str(BASE_DIR / ".env"))

# Runtime state (SQLite file, generated secret key, embedded Redis data) lives
# here and is git-ignored.
VAR_DIR = Path(env.str("COPILOT_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, else a key generated once and kept in var/ (never committed)."""
    from_env = str(env.str("DJANGO_SECRET_KEY", default=""))
    if from_env:
        return from_env
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        # O_EXCL: when web and worker start together, exactly one writes the key.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DJANGO_DEBUG", default=False)
HOST = env.str("HOST", default="127.0.0.1")
PORT = env.int("PORT", default=8000)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# https://docs.djangoproject.com/en/5.2/ref/settings/#installed-apps
INSTALLED_APPS = [
    "daphne",  # must precede staticfiles so `runserver` is the ASGI one
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "axes",
    "csp",
    "copilot_site.core",
    "copilot_site.accounts",
    "billing",
    "ratelimits",
    "chat",
]

MIDDLEWARE = [
    # Outermost: a streaming response gives its thread's database connection back
    # before the stream starts, so a live stream holds none.
    "copilot_site.core.sql.connection_release_middleware",
    # First, so its `process_exception` answers a view's database or Redis outage after
    # RequestIdMiddleware's has counted it.
    "copilot_site.core.middleware.OutageMiddleware",
    # First: every response, redirects and errors included, carries X-Request-ID.
    "copilot_site.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves static files (right after SecurityMiddleware, as WhiteNoise asks).
    # https://whitenoise.readthedocs.io/en/stable/django.html
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the 429 lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "copilot_site.urls"
ASGI_APPLICATION = "copilot_site.asgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat-home"
LOGOUT_REDIRECT_URL = "login"

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
                "copilot_site.core.context_processors.site",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-db-url
# SQLite by default "so one can just check out code" (healthchecks); DATABASE_URL
# switches to PostgreSQL (postgres://user:pass@host:5432/name).
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker share one file. IMMEDIATE takes the write lock at BEGIN so a
    # second writer waits (up to `timeout`) instead of failing with "database is
    # locked"; WAL lets readers proceed during a write.
    # https://docs.djangoproject.com/en/5.2/ref/databases/#sqlite-transaction-behavior
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL;",
    }
    # The processes the tests start (daphne, Celery) open the test DB by name.
    _db["TEST"] = {"NAME": env.str("COPILOT_TEST_DB_NAME", default=str(VAR_DIR / "test_db.sqlite3"))}
else:
    # One pool of at most COPILOT_DB_POOL_MAX connections per process (web and worker
    # each), shared by every thread: a thread holds a connection only while it runs
    # SQL, so the number of connections no longer grows with live turns.
    # https://docs.djangoproject.com/en/5.2/ref/databases/#connection-pool
    # COPILOT_DB_POOL=0 behind PgBouncer in transaction mode: PgBouncer pools, each
    # thread keeps its client connection, and server-side cursors (which outlive a
    # transaction) are off.
    # https://docs.djangoproject.com/en/5.2/ref/databases/#transaction-pooling-server-side-cursors
    COPILOT_DB_POOL = env.bool("COPILOT_DB_POOL", default=True)
    COPILOT_DB_POOL_MIN = env.int("COPILOT_DB_POOL_MIN", default=2)
    COPILOT_DB_POOL_MAX = env.int("COPILOT_DB_POOL_MAX", default=8)
    COPILOT_DB_POOL_TIMEOUT_S = env.float("COPILOT_DB_POOL_TIMEOUT_S", default=3.0)  # an outage answers 503 within it
    if COPILOT_DB_POOL:
        _db["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django must not
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": COPILOT_DB_POOL_MIN,
            "max_size": COPILOT_DB_POOL_MAX,
            "timeout": COPILOT_DB_POOL_TIMEOUT_S,
        }
    else:
        _db.setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
        _db["DISABLE_SERVER_SIDE_CURSORS"] = True
    # With the pool: the pool checks each connection it hands out, and after a
    # database restart drops all the dead ones at once (copilot_site.core.postgresql).
    _db["CONN_HEALTH_CHECKS"] = True
    _db["ENGINE"] = "copilot_site.core.postgresql"
    _db["TEST"] = {"NAME": f"test_{_db['NAME']}"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis --------------------------------------------------------------------
# The embedded server started by `make run` listens here; REDIS_URL points at an
# external one instead.
EMBEDDED_REDIS_PORT = env.int("COPILOT_EMBEDDED_REDIS_PORT", default=6389)
REDIS_URL = env.str("REDIS_URL", default=f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0")

# https://docs.djangoproject.com/en/5.2/topics/cache/#redis
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cache",
    }
}

# https://channels.readthedocs.io/en/latest/topics/channel_layers.html#redis-channel-layer
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "copilot:channels"},
    }
}

# --- Celery -------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# The (disabled) result backend is stateless: share one instance instead of
# building one per pool thread (each build scans every installed entry point).
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
# A task is acknowledged only when it has run (acks_late), so a task whose worker
# dies before finishing it is delivered again; every task is idempotent (a turn's
# task runs only while the registry names its turn as claimed and not started, see
# chat.tasks.run_turn).
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-acks-late
CELERY_TASK_ACKS_LATE = True
# A prefork child killed mid-task (OOM, kill -9) requeues the task instead of failing it.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-reject-on-worker-lost
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A worker reserves only what it can run (concurrency x 1), so few tasks wait on a
# worker that may die, and none waits behind a busy one while another is idle.
# https://docs.celeryq.dev/en/stable/userguide/optimizing.html#prefetch-limits
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
COPILOT_TURN_TIME_LIMIT_S = env.int("COPILOT_TURN_TIME_LIMIT_S", default=3600)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-soft-time-limit
CELERY_TASK_SOFT_TIME_LIMIT = COPILOT_TURN_TIME_LIMIT_S
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-time-limit
CELERY_TASK_TIME_LIMIT = COPILOT_TURN_TIME_LIMIT_S + 60
# The Redis broker has no consumer connections to watch: a task a worker received
# and never acknowledged (the worker died) is given to another worker once it has
# been unacknowledged for `visibility_timeout`, found by a sweep every worker runs
# every `unacked_restore_interval` x `unacked_restore_throttle` seconds. Both are
# short so that a turn reserved by a dead worker runs elsewhere within ~20 s
# instead of waiting for COPILOT_TURN_START_TIMEOUT_S. A task still running when
# its visibility timeout passes is delivered a second time too: the turn task
# recognises that its turn is already running (or over) and drops the copy; the
# registry's claim, not the broker, decides that a turn runs once.
# `unacked_mutex_expire` bounds how long a worker killed during a sweep blocks the
# others' sweeps. RabbitMQ ignores these options: it requeues a dead consumer's
# unacknowledged messages as soon as its connection closes; there the broker's
# `consumer_timeout` must exceed CELERY_TASK_TIME_LIMIT.
# https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
COPILOT_TASK_VISIBILITY_TIMEOUT_S = env.int("COPILOT_TASK_VISIBILITY_TIMEOUT_S", default=15)
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "visibility_timeout": COPILOT_TASK_VISIBILITY_TIMEOUT_S,
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": 10,
    }
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://", "sentinel://"))
    else {}
)
# A lost broker connection does not cancel running turns: with RabbitMQ their tasks
# are redelivered, and the copies are dropped while the turn is still running.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "copilot_default"
COPILOT_TURN_QUEUE = "copilot_turns"
CELERY_TASK_ROUTES = {"chat.run_turn": {"queue": COPILOT_TURN_QUEUE, "routing_key": COPILOT_TURN_QUEUE}}
# Declared so that a plain `celery -A copilot_site worker` consumes both.
# Each queue gets its own exchange and routing key: without them Celery binds both
# to the default exchange and key, and every task would land in both queues.
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name), routing_key=name) for name in (CELERY_TASK_DEFAULT_QUEUE, COPILOT_TURN_QUEUE)
)
CELERY_TASK_DEFAULT_EXCHANGE = CELERY_TASK_DEFAULT_QUEUE
CELERY_TASK_DEFAULT_ROUTING_KEY = CELERY_TASK_DEFAULT_QUEUE
# The worker runs the `threads` pool: a turn mostly waits on the network, so one
# process holds many live turns (each thread runs its own event loop).
COPILOT_WORKER_CONCURRENCY = env.int("COPILOT_WORKER_CONCURRENCY", default=20)

# --- Turns and live streaming -------------------------------------------------------
COPILOT_SSE_HEARTBEAT_S = env.float("COPILOT_SSE_HEARTBEAT_S", default=10.0)
COPILOT_CLUSTER_LOCK_TIMEOUT_S = env.int("COPILOT_CLUSTER_LOCK_TIMEOUT_S", default=300)
COPILOT_STREAM_LOCK_TTL_S = env.int("COPILOT_STREAM_LOCK_TTL_S", default=120)
COPILOT_STREAM_IDLE_TIMEOUT_S = env.int("COPILOT_STREAM_IDLE_TIMEOUT_S", default=600)
# A queued turn no worker starts within this long is failed (workers all down).
COPILOT_TURN_START_TIMEOUT_S = env.int("COPILOT_TURN_START_TIMEOUT_S", default=120)
COPILOT_PENDING_MAX = 10
COPILOT_PENDING_CALL_LIMIT = env.int("COPILOT_PENDING_CALL_LIMIT", default=30)
COPILOT_PENDING_CALL_WINDOW_S = env.int("COPILOT_PENDING_CALL_WINDOW_S", default=60)
COPILOT_MESSAGE_MAX_CHARS = env.int("COPILOT_MESSAGE_MAX_CHARS", default=32000)

# --- Per-user abuse caps (ratelimits.user_caps) ------------------------------------------
# The FREE values; a tier multiplies them like its spend limits (PRO ×5, BUSINESS ×20,
# ENTERPRISE ×60). 0 = no cap. A refusal is 429 {detail, code} with Retry-After.
COPILOT_USER_MAX_RUNNING_TURNS = env.int("COPILOT_USER_MAX_RUNNING_TURNS", default=5)
COPILOT_USER_MAX_IN_FLIGHT_TURNS = env.int("COPILOT_USER_MAX_IN_FLIGHT_TURNS", default=15)
COPILOT_USER_SENDS_PER_MINUTE = env.int("COPILOT_USER_SENDS_PER_MINUTE", default=60)
COPILOT_USER_SESSIONS_PER_MINUTE = env.int("COPILOT_USER_SESSIONS_PER_MINUTE", default=20)
# Active (unrevoked) API keys per user; not scaled by tier.
COPILOT_USER_MAX_API_KEYS = env.int("COPILOT_USER_MAX_API_KEYS", default=10)

# --- Web process transport patches (copilot_site.core.transport_patches) --------------
# Twisted's TCP connections send a write at once when nothing is buffered, not on the next loop pass.
COPILOT_TWISTED_WRITE_PATCH = env.bool("COPILOT_TWISTED_WRITE_PATCH", default=True)
# daphne writes a WebSocket text message as one frame it builds itself instead of through autobahn.
COPILOT_WS_FRAME_PATCH = env.bool("COPILOT_WS_FRAME_PATCH", default=True)

# --- Auth and API ---------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Sign-in throttle (django-axes) --------------------------------------------------
# https://django-axes.readthedocs.io/en/latest/4_configuration.html
# Axes' backend comes first: it refuses a locked-out username or address before any
# password is checked. Failed attempts are rows in the database, listed in the admin
# ("Access attempts"), where staff unlock by deleting them.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
COPILOT_LOGIN_FAILURE_LIMIT = env.int("COPILOT_LOGIN_FAILURE_LIMIT", default=5)
COPILOT_LOGIN_COOLOFF_SECONDS = env.int("COPILOT_LOGIN_COOLOFF_SECONDS", default=15 * 60)
AXES_FAILURE_LIMIT = COPILOT_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(seconds=COPILOT_LOGIN_COOLOFF_SECONDS)
# Each listed parameter is counted on its own: 5 failures for one username (from any
# address) or from one address (for any usernames) lock that username or address.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# An attempt during a lockout restarts the cool-off, so `Retry-After` is always the whole of it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True
AXES_LOCKOUT_CALLABLE = "copilot_site.accounts.views.login_lockout"
# The client address is REMOTE_ADDR; behind a proxy, run daphne with --proxy-headers
# so that REMOTE_ADDR is the client's and not the proxy's.
# Failed `Authorization: Bearer` attempts per client address (HTTP and WebSocket),
# counted in Redis: past the limit every bearer request from it is refused until the
# window ends.
COPILOT_API_KEY_FAILURE_LIMIT = env.int("COPILOT_API_KEY_FAILURE_LIMIT", default=20)
COPILOT_API_KEY_FAILURE_WINDOW_S = env.int("COPILOT_API_KEY_FAILURE_WINDOW_S", default=600)
# Signups refused because the username or e-mail is taken, per client address.
COPILOT_SIGNUP_REFUSAL_LIMIT = env.int("COPILOT_SIGNUP_REFUSAL_LIMIT", default=10)
COPILOT_SIGNUP_REFUSAL_WINDOW_S = env.int("COPILOT_SIGNUP_REFUSAL_WINDOW_S", default=3600)

# --- Content-Security-Policy (django-csp) --------------------------------------------
# Every page: scripts, styles, fonts, images and connections from this origin only
# (WebSockets included: 'self' covers ws:/wss: to the same host), no inline script or
# style element, no plugins, no framing, forms posting here only. The pages have no
# inline scripts, so no nonce is needed; the API docs page adds the CDN it loads
# Swagger UI from (copilot_site/urls.py).
# https://django-csp.readthedocs.io/en/latest/configuration.html
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- E-mail (password reset) ---------------------------------------------------------
# EMAIL_URL picks the backend and server, e.g. smtp+tls://user:password@smtp.example.com:587
# (smtp+ssl:// for implicit TLS on 465); the default prints mails on the console.
# The production profile defaults to smtp://localhost:25 instead. Tests use Django's
# in-memory backend (pytest-django sets it).
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-email-url
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="copilot@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
# https://docs.djangoproject.com/en/5.2/ref/settings/#password-reset-timeout
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=3 * 24 * 3600)

# https://www.django-rest-framework.org/api-guide/settings/
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Bearer first: its `authenticate_header` makes anonymous API calls 401.
        "copilot_site.accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, size- and depth-capped before decoding (COPILOT_API_MAX_* below).
    "DEFAULT_PARSER_CLASSES": ["copilot_site.core.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "copilot_site.core.exceptions.api_exception_handler",
}
# A JSON body (API request, Stripe webhook, WebSocket frame) over this many bytes is refused (413).
COPILOT_API_MAX_BODY_BYTES = env.int("COPILOT_API_MAX_BODY_BYTES", default=1024 * 1024)
# A WebSocket text frame over this many bytes is answered with an error frame (the socket stays
# open). Keep it below the server's own frame limit (daphne: 1 MiB), past which daphne closes
# the socket with 1009 before the application sees the frame.
COPILOT_WS_MAX_FRAME_BYTES = env.int("COPILOT_WS_MAX_FRAME_BYTES", default=512 * 1024)
# JSON whose arrays/objects nest deeper than this is refused (400) before it is decoded.
COPILOT_API_MAX_JSON_DEPTH = env.int("COPILOT_API_MAX_JSON_DEPTH", default=32)
# The largest `offset` a paginated endpoint accepts (400 above it).
COPILOT_API_MAX_OFFSET = env.int("COPILOT_API_MAX_OFFSET", default=1_000_000)
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

# https://drf-spectacular.readthedocs.io/en/latest/settings.html
SPECTACULAR_SETTINGS = {
    "TITLE": "Copilot API",
    "DESCRIPTION": "Chat sessions, streamed agent turns, usage, credits and subscriptions.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # A PATCH body here is validated whole (its required fields stay required).
    "COMPONENT_SPLIT_PATCH": False,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "billing.schema.stripe_webhook_path"],
}

# --- Internationalisation and static files --------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
# WhiteNoise serves the files: in production `collectstatic`'s output in STATIC_ROOT
# (hashed and compressed, see production.py); the local and test profiles find them
# in the source folders under their plain names instead (WHITENOISE_USE_FINDERS).
# https://docs.djangoproject.com/en/5.2/ref/settings/#storages
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = False

# --- LLM ------------------------------------------------------------------------
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
# With no key at all the copilot answers with its built-in offline demo model: the
# project's scripted OpenAI-compatible server, started by `make run` on this port.
COPILOT_DEMO_LLM_PORT = env.int("COPILOT_DEMO_LLM_PORT", default=8391)
COPILOT_DEMO_MODEL = not (OPENAI_API_KEY or ANTHROPIC_API_KEY)
COPILOT_LLM_PROVIDER = env.str(
    "COPILOT_LLM_PROVIDER",
    default="anthropic" if ANTHROPIC_API_KEY and not OPENAI_API_KEY else "openai_compat",
)
COPILOT_LLM_BASE_URL = env.str(
    "OPENAI_BASE_URL",
    default=f"http://127.0.0.1:{COPILOT_DEMO_LLM_PORT}/v1" if COPILOT_DEMO_MODEL else "https://openrouter.ai/api/v1",
)
COPILOT_LLM_API_KEY = OPENAI_API_KEY or ("demo" if COPILOT_DEMO_MODEL else "")
COPILOT_MODEL = env.str("COPILOT_MODEL", default="anthropic/claude-sonnet-4-6")
COPILOT_ADVANCED_MODEL = env.str("COPILOT_ADVANCED_MODEL", default="anthropic/claude-opus-4-7")
COPILOT_TITLE_MODEL = env.str("COPILOT_TITLE_MODEL", default="openai/gpt-4o-mini")
# The Anthropic provider's endpoint (the SDK appends /v1/messages); tests point it at the fake.
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="https://api.anthropic.com")
# SDK-level retries of a failed request (connection errors, 408/429/5xx) before a round fails.
# https://github.com/openai/openai-python#retries
COPILOT_LLM_MAX_RETRIES = env.int("COPILOT_LLM_MAX_RETRIES", default=2)
COPILOT_LLM_TIMEOUT_S = env.float("COPILOT_LLM_TIMEOUT_S", default=600.0)
# Output cap sent to the Anthropic provider (it requires one); raised above the thinking budget.
COPILOT_MAX_OUTPUT_TOKENS = env.int("COPILOT_MAX_OUTPUT_TOKENS", default=16000)
COPILOT_DEFAULT_MODE = env.str("COPILOT_DEFAULT_MODE", default="extended_thinking")
# Reasoning budget; 0 or negative is the kill switch (no reasoning parameter is sent).
# https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
COPILOT_MAX_THINKING_TOKENS = env.int("COPILOT_MAX_THINKING_TOKENS", default=8192)
# TTL of the prompt-cache markers on Anthropic routes: "5m" or "1h".
# https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching
COPILOT_PROMPT_CACHE_TTL = env.str("COPILOT_PROMPT_CACHE_TTL", default="1h")
COPILOT_MAX_TOOL_ROUNDS = env.int("COPILOT_MAX_TOOL_ROUNDS", default=30)
COPILOT_MAX_TOOL_WAIT_S = env.float("COPILOT_MAX_TOOL_WAIT_S", default=300.0)
COPILOT_TOOL_OUTPUT_MAX_CHARS = env.int("COPILOT_TOOL_OUTPUT_MAX_CHARS", default=100_000)
COPILOT_TOOL_SCHEMA_BUDGET_CHARS = env.int("COPILOT_TOOL_SCHEMA_BUDGET_CHARS", default=32_000)
# Estimated prompt tokens above which older context is compacted (80% of a 200k window).
COPILOT_CONTEXT_TOKEN_BUDGET = env.int("COPILOT_CONTEXT_TOKEN_BUDGET", default=160_000)
# USD per million tokens for providers that do not report cost, e.g.
# {"anthropic/claude-sonnet-4-6": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75}}.
# A model without an entry has no known cost (the spend counter is then skipped).
COPILOT_MODEL_PRICES = env.json("COPILOT_MODEL_PRICES", default={})
# Operator switches for the built-in tools: names listed here are never offered.
COPILOT_DISABLED_TOOLS = env.list("COPILOT_DISABLED_TOOLS", default=[])
# Credit price (cents) per run, overriding a tool's own `cost_cents`, e.g. {"web_fetch": 1}.
COPILOT_TOOL_COST_CENTS = env.json("COPILOT_TOOL_COST_CENTS", default={})
# web_fetch connects only to globally routable addresses, except for these hosts.
COPILOT_WEB_FETCH_ALLOWED_HOSTS = env.list("COPILOT_WEB_FETCH_ALLOWED_HOSTS", default=[])
COPILOT_WEB_FETCH_MAX_BYTES = env.int("COPILOT_WEB_FETCH_MAX_BYTES", default=2_000_000)
COPILOT_WEB_FETCH_TIMEOUT_S = env.float("COPILOT_WEB_FETCH_TIMEOUT_S", default=15.0)

# tiktoken loads its BPE files from here (vendored; there is no network).
TIKTOKEN_CACHE_DIR = str(BASE_DIR / "chat" / "tiktoken_data")
os.environ.setdefault("TIKTOKEN_CACHE_DIR", TIKTOKEN_CACHE_DIR)

# --- Billing ----------------------------------------------------------------------
ENABLE_CREDIT = env.bool("ENABLE_CREDIT", default=True)
ENABLE_PLATFORM_PAYMENT = env.bool("ENABLE_PLATFORM_PAYMENT", default=bool(env.str("STRIPE_SECRET_KEY", default="")))
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
# Points the Stripe SDK at another server (the project's fake Stripe, in tests).
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
STRIPE_PRICE_PRO = env.str("STRIPE_PRICE_PRO", default="")
STRIPE_PRICE_BUSINESS = env.str("STRIPE_PRICE_BUSINESS", default="")
FRONTEND_BASE_URL = env.str("FRONTEND_BASE_URL", default="")
PLATFORM_BASE_URL = env.str("PLATFORM_BASE_URL", default=f"http://{HOST}:{PORT}")
# Per-request timeout and retries of Stripe calls (the SDK's defaults are 80 s and 2).
# https://github.com/stripe/stripe-python#configuring-automatic-retries
STRIPE_TIMEOUT_S = env.float("STRIPE_TIMEOUT_S", default=10.0)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
# The drift check after an admin tier change is advisory: short timeout, no retry.
BILLING_DRIFT_CHECK_TIMEOUT_S = env.float("BILLING_DRIFT_CHECK_TIMEOUT_S", default=5.0)
# Display price per tier in cents, used only without a Stripe price (dev, payments
# off), e.g. BILLING_TIER_PRICES_CENTS='{"PRO": 2000, "BUSINESS": 10000}'.
BILLING_TIER_PRICES_CENTS = env.json("BILLING_TIER_PRICES_CENTS", default={})
# Credit top-ups through Checkout: currency and accepted amounts, in cents.
BILLING_CURRENCY = env.str("BILLING_CURRENCY", default="usd")
BILLING_TOP_UP_MIN_CENTS = env.int("BILLING_TOP_UP_MIN_CENTS", default=500)
BILLING_TOP_UP_MAX_CENTS = env.int("BILLING_TOP_UP_MAX_CENTS", default=100_000)

# --- Rate limits --------------------------------------------------------------------
# Spend is metered in microdollars (1 USD = 1,000,000), credits in cents (1 credit =
# 1 cent); every setting and field name carries its unit.
# The per-tier limits live in the staff-editable `ratelimits.TierLimit` rows; these
# FREE-tier bases (×1/×5/×20/×60) apply only to a tier whose row is missing. 0 = unlimited.
COPILOT_DAILY_COST_LIMIT_MICRODOLLARS = env.int("COPILOT_DAILY_COST_LIMIT_MICRODOLLARS", default=1_000_000)
COPILOT_WEEKLY_COST_LIMIT_MICRODOLLARS = env.int("COPILOT_WEEKLY_COST_LIMIT_MICRODOLLARS", default=5_000_000)
# Credit price (cents) of a paid daily reset; 0 disables the feature.
COPILOT_RATE_LIMIT_RESET_COST_CENTS = env.int("COPILOT_RATE_LIMIT_RESET_COST_CENTS", default=500)
# Paid resets per user per UTC day; 0 = unlimited.
COPILOT_MAX_DAILY_RESETS = env.int("COPILOT_MAX_DAILY_RESETS", default=5)
# The engine stops a runaway turn whose cost passes its tier's cap; 0 = no cap.
# JSON object, e.g. COPILOT_TURN_COST_CAP_MICRODOLLARS='{"FREE": 500000, "PRO": 2000000}';
# a tier missing from it has no cap.
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-json
COPILOT_TURN_COST_CAP_MICRODOLLARS: dict[str, int] = env.json(
    "COPILOT_TURN_COST_CAP_MICRODOLLARS",
    default={"FREE": 500_000, "PRO": 2_000_000, "BUSINESS": 5_000_000, "ENTERPRISE": 0},
)
# A `data-usage-warning` chunk is sent once per window when spend crosses this share.
COPILOT_USAGE_WARNING_PERCENT = env.int("COPILOT_USAGE_WARNING_PERCENT", default=80)

# --- Logging -----------------------------------------------------------------------
# LOG_FORMAT=json: one JSON object per line (timestamp, level, logger, message,
# exception, and request_id, user_id, session_id, turn_id where known); "plain" (the
# default) is for reading in a terminal. The Celery worker logs through this too
# (copilot_site/celery_app.py). The request id comes from a valid incoming
# X-Request-ID (or is made) and is sent back in that response header.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "copilot_site.core.logs.LogContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "copilot_site.core.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Metrics -----------------------------------------------------------------------
# GET /metrics (Prometheus text format) answers only `Authorization: Bearer <this>`;
# empty (the default) turns the endpoint off (404). A wrong or missing token is 401.
COPILOT_METRICS_TOKEN = env.str("COPILOT_METRICS_TOKEN", default="")
# Where the web and worker processes keep their metric values (prometheus-client's
# multiprocess mode, see copilot_site/core/metrics.py): one directory that every
# process of the site can write, emptied by `runstack` at start. Exported to the
# environment before prometheus-client is imported, which reads it there. Empty:
# each process keeps its own values and /metrics shows the web process's only.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus"))
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
else:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

# --- Tools that ask first (human in the loop; chat/tools/approval.py) ---------------
# Tool names whose every call waits for the user's Approve / Deny, e.g. ["web_fetch"].
# Also asked, whatever this list says: a priced tool whose run costs more than the
# threshold the user set on the account page. Empty list and no threshold: no client
# ever sees an approval chunk.
COPILOT_TOOLS_REQUIRING_APPROVAL = env.json("COPILOT_TOOLS_REQUIRING_APPROVAL", default=[])
# Seconds a tool call waits for the user's answer; then it counts as denied.
COPILOT_APPROVAL_TIMEOUT_S = env.float("COPILOT_APPROVAL_TIMEOUT_S", default=600.0)
# How often the waiting turn reads its approval row (the decision lands within this).
COPILOT_APPROVAL_POLL_S = env.float("COPILOT_APPROVAL_POLL_S", default=0.25)


# --- MCP servers (chat.mcp) -------------------------------------------------------------
# https://modelcontextprotocol.io/specification — the operator's MCP servers, whose tools
# join the built-ins as <server>__<tool>. Seeds McpServer rows on `migrate` (and with
# `manage.py mcp_seed`) when no server of that name exists; the admin owns them after that.
# [{"name": "docs", "transport": "streamable-http", "url": "http://127.0.0.1:9000/mcp",
#   "headers": {}, "bearer_token": "", "timeout_s": 30, "allowed_tiers": []},
#  {"name": "files", "transport": "stdio", "command": ["npx", "-y", "some-mcp-server"], "env": {"API_KEY": "…"}}]
COPILOT_MCP_SERVERS = env.json("COPILOT_MCP_SERVERS", default=[])
# How long a server's tools/list stays cached in Redis (a list_changed notification refreshes it sooner).
COPILOT_MCP_TOOLS_CACHE_TTL_S = env.int("COPILOT_MCP_TOOLS_CACHE_TTL_S", default=300)
# A server heard from within this many seconds is not pinged again at a turn's start.
COPILOT_MCP_HEALTH_TTL_S = env.float("COPILOT_MCP_HEALTH_TTL_S", default=5.0)
# The longest a turn's start waits for a server to answer a ping or (re)connect.
COPILOT_MCP_CONNECT_WAIT_S = env.float("COPILOT_MCP_CONNECT_WAIT_S", default=3.0)
# Reconnection back-off doubles from 1 s up to this.
COPILOT_MCP_RECONNECT_MAX_S = env.float("COPILOT_MCP_RECONNECT_MAX_S", default=30.0)
# A tool whose input schema is longer than this (JSON characters) is refused; descriptions are cut.
COPILOT_MCP_SCHEMA_MAX_CHARS = env.int("COPILOT_MCP_SCHEMA_MAX_CHARS", default=16_000)
COPILOT_MCP_DESCRIPTION_MAX_CHARS = env.int("COPILOT_MCP_DESCRIPTION_MAX_CHARS", default=1_024)
