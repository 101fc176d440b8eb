"""Settings for the compute exchange, read from the environment (12-factor).

Defaults give the embedded mode a newcomer runs with one command: SQLite in
the project folder, Celery tasks run in-process, Stripe calls go to a local
fake. `EXCHANGE_ENV=production` switches on the deployment hardening that
`manage.py check --deploy` asks for and refuses to start without a real
SECRET_KEY.
"""

import datetime as dt
import hashlib
import re
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
env.read_env(BASE_DIR / ".env")

EXCHANGE_ENV = env.str("EXCHANGE_ENV", default="development")
if EXCHANGE_ENV not in {"development", "production"}:
    raise environ.ImproperlyConfigured(
        f"EXCHANGE_ENV must be 'development' or 'production', not {EXCHANGE_ENV!r}"
    )
PRODUCTION = EXCHANGE_ENV == "production"

DEBUG = env.bool("DEBUG", default=not PRODUCTION)
# A simulated clock for every process (core/clock.py): "sim:<start>@<anchor>x<speed>"
# (accelerated, the demo) or "step:<redis URL>" (the simulator's). Refused in production.
EXCHANGE_CLOCK = env.str("EXCHANGE_CLOCK", default="")
if PRODUCTION:
    SECRET_KEY = env.str("SECRET_KEY")
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure"):
        raise environ.ImproperlyConfigured("SECRET_KEY must be at least 50 random characters")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-dev-only-not-for-production")
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "core",
    "accounts",
    "market",
    "billing",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "core.middleware.refuse_nul_characters",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "core.middleware.viewer_time_zone",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "core.db.replica_pin",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: turns a sign-in refused by the lockout into its answer (accounts/lockout.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.organisation",
                "csp.context_processors.nonce",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the demo's web process and in-process tasks read while one writes.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
# A PostgreSQL streaming replica for read-only traffic (public board and search,
# charts, reports): core/db.py routes there the views marked `replica_reads`, except
# for a user who has just written (read-your-writes for REPLICA_PIN_SECONDS).
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
REPLICA_PIN_SECONDS = env.int("REPLICA_PIN_SECONDS", default=10)
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = {
        **env.db_url_config(DATABASE_REPLICA_URL),
        "CONN_MAX_AGE": DATABASES["default"].get("CONN_MAX_AGE", 0),
        "CONN_HEALTH_CHECKS": True,
        # Tests read the replica through the primary's test database.
        "TEST": {"MIRROR": "default"},
    }
DATABASE_ROUTERS = ["core.db.ReplicaRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The lockout backend first: it refuses a locked-out sign-in before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Money -----------------------------------------------------------------
DEFAULT_CURRENCY = env.str("DEFAULT_CURRENCY", default="CNY")
# The ISO 4217 codes the exchange settles in (programmes, ledger accounts).
EXCHANGE_CURRENCIES = env.list("EXCHANGE_CURRENCIES", default=[DEFAULT_CURRENCY])
if DEFAULT_CURRENCY not in EXCHANGE_CURRENCIES or not all(
    len(code) == 3 and code.isascii() and code.isupper() and code.isalpha()
    for code in EXCHANGE_CURRENCIES
):
    raise environ.ImproperlyConfigured(
        "EXCHANGE_CURRENCIES must be ISO 4217 codes (e.g. CNY) and include DEFAULT_CURRENCY"
    )

# --- Billing -------------------------------------------------------------------
# Invoice period: "monthly" (calendar months in TIME_ZONE), "weekly" or "daily".
BILLING_PERIOD = env.str("BILLING_PERIOD", default="monthly")
if BILLING_PERIOD not in {"monthly", "weekly", "daily"}:
    raise environ.ImproperlyConfigured("BILLING_PERIOD must be monthly, weekly or daily")
PLATFORM_FEE_BASIS_POINTS = env.int("PLATFORM_FEE_BASIS_POINTS", default=500)  # 5 % of each line
# A provider owes this many times the price of GPU-time lost to its faults.
# An invitation link to join an organisation works once, for this many days.
INVITATION_TTL_DAYS = env.int("INVITATION_TTL_DAYS", default=7)
if not 1 <= INVITATION_TTL_DAYS <= 90:
    raise environ.ImproperlyConfigured("INVITATION_TTL_DAYS must be 1 to 90")
SLA_CREDIT_MULTIPLE = env.int("SLA_CREDIT_MULTIPLE", default=5)
if not (0 <= PLATFORM_FEE_BASIS_POINTS <= 10_000) or SLA_CREDIT_MULTIPLE < 0:
    raise environ.ImproperlyConfigured(
        "PLATFORM_FEE_BASIS_POINTS 0..10000, SLA_CREDIT_MULTIPLE ≥ 0"
    )
# Extension point: further subsidy schemes called at invoice issue, after the compute
# vouchers (which settlement calls by name), as hook(*, invoice) -> amount (minor units);
# see billing/settlement.py. Empty by default.
BILLING_SETTLEMENT_HOOKS = env.list("BILLING_SETTLEMENT_HOOKS", default=[])
# The one declared seam against the layering: Celery task names queued (through the
# outbox) with a lease's id when it completes. The market names no billing code;
# billing subscribes here by task name (market/leases.py, CONTRIBUTING.md).
LEASE_COMPLETED_TASKS = ["billing.invoice_refresh_for_lease"]
# The second declared seam: dotted paths called as check(*, buyer, currency) before an
# order is stored (market/orders.py); each raises an ApplicationError to refuse it.
# Billing holds buyers to their funding terms here (billing/prepaid.py).
ORDER_PLACEMENT_CHECKS = ["billing.prepaid.funding_check_order"]

# --- REST API ----------------------------------------------------------------
# The largest JSON body the API parses (telemetry batches are read by their own view).
API_JSON_MAX_BYTES = env.int("API_JSON_MAX_BYTES", default=256 * 1024)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # orjson with a size and a nesting limit (core/parsers.py), then the stock form parsers.
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "core.openapi.ExchangeAutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Scoped throttles (core/throttles.py) read their rates here; see "Abuse limits" below.
    "DEFAULT_THROTTLE_RATES": {},
}
# API tokens expire API_TOKEN_TTL_DAYS after creation; a user holds at most
# API_TOKEN_LIMIT_PER_USER unexpired ones (accounts.services.api_token_create).
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=30)
API_TOKEN_LIMIT_PER_USER = env.int("API_TOKEN_LIMIT_PER_USER", default=10)
REST_KNOX = {
    "TOKEN_TTL": dt.timedelta(days=API_TOKEN_TTL_DAYS),
    "TOKEN_LIMIT_PER_USER": API_TOKEN_LIMIT_PER_USER,
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}
if API_TOKEN_TTL_DAYS < 1 or API_TOKEN_LIMIT_PER_USER < 1:
    raise environ.ImproperlyConfigured("API_TOKEN_TTL_DAYS and API_TOKEN_LIMIT_PER_USER ≥ 1")
SPECTACULAR_SETTINGS = {
    "TITLE": "Compute exchange API",
    "DESCRIPTION": "GPU-hours marketplace with public compute vouchers (算力券).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No badge fetched from validator.swagger.io: nothing leaves this origin.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {},
}
# Compute vouchers: name the subsidy enums so "status" does not collide across components.
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(  # type: ignore[attr-defined]
    {
        "InvoiceStatusEnum": "billing.models.invoices.Invoice.Status",
        "ProgrammeStatusEnum": "billing.models.subsidy.SubsidyProgramme.Status",
        "VoucherStatusEnum": "billing.models.subsidy.Voucher.Status",
        "VoucherApplicationStatusEnum": "billing.models.subsidy.VoucherApplication.Status",
        "RedemptionStatusEnum": "billing.models.subsidy.Redemption.Status",
        "FraudFlagStatusEnum": "billing.models.subsidy.FraudFlag.Status",
    }
)
# Accounts: a member's role (every role) apart from the roles an invitation gives.
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(  # type: ignore[attr-defined]
    {
        "MembershipRoleEnum": "accounts.models.Membership.Role",
        "InvitableRoleEnum": "accounts.invitations.INVITABLE_ROLES",
        "OrganisationKindEnum": "accounts.models.Organisation.Kind",
        "SignUpKindEnum": ["provider", "buyer"],  # the kinds one signs up as
    }
)

# --- Celery ------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = None
    CELERY_TASK_ALWAYS_EAGER = False
else:
    # Embedded mode: tasks run in-process, in the caller, right after commit.
    # (with a host named: kombu warns "No hostname was supplied" for a bare memory://)
    CELERY_BROKER_URL = "memory://localhost/"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=120)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=180)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# One queue per domain, so that each gets its own worker pool in production (README,
# "Production-like run") and a burst in one (telemetry, a payout run) never holds
# up another (matching). Patterns are tried in order; the rest goes to "celery".
EXCHANGE_CELERY_QUEUES = ["matching", "telemetry", "billing", "payments", "payouts", "celery"]
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {
    "market.match_*": {"queue": "matching"},
    "market.orders_*": {"queue": "matching"},
    "market.leases_advance": {"queue": "matching"},
    "market.leases_failover": {"queue": "matching"},
    "market.nodes_*": {"queue": "telemetry"},
    "market.leases_meter": {"queue": "telemetry"},
    "market.telemetry_*": {"queue": "telemetry"},
    "billing.stripe_*": {"queue": "payments"},
    "billing.payment*": {"queue": "payments"},
    "billing.payout*": {"queue": "payouts"},
    "billing.*": {"queue": "billing"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
# Seconds between runs. `celery beat` in production; demo.scheduler in the embedded mode.
CELERY_BEAT_SCHEDULE: dict = {
    # outbox: publish what a lost broker dropped or a failed publish left behind
    "core-outbox-relay": {"task": "core.outbox_relay", "schedule": 30.0},
    # webhooks to organisations' own systems: retries of what is due
    "accounts-webhooks-send": {"task": "accounts.webhooks_send", "schedule": 30.0},
    # market: matching, lease lifecycle, order expiry
    "market-match-round": {"task": "market.match_round", "schedule": 5.0},
    "market-leases-advance": {"task": "market.leases_advance", "schedule": 15.0},
    "market-nodes-drain": {"task": "market.nodes_drain_due", "schedule": 15.0},
    "market-orders-expire": {"task": "market.orders_expire", "schedule": 30.0},
    # price index: publish yesterday's snapshot (a no-op once it is published)
    "market-price-index-publish": {"task": "market.price_index_publish", "schedule": 3600.0},
    # telemetry: node health, failover, metering
    "telemetry-node-health": {"task": "market.nodes_health_check", "schedule": 5.0},
    "telemetry-failover": {"task": "market.leases_failover", "schedule": 15.0},
    "telemetry-metering": {"task": "market.leases_meter", "schedule": 60.0},
    # telemetry storage: per-minute rollups; day partitions ahead, retention behind
    "telemetry-rollup": {"task": "market.telemetry_rollup", "schedule": 60.0},
    "telemetry-storage": {"task": "market.telemetry_storage_maintain", "schedule": 3600.0},
    # billing: close periods, refresh drafts, reconcile Stripe, pay providers
    "billing-settle-closed-periods": {
        "task": "billing.invoices_settle_closed_period",
        "schedule": 3600.0,
    },
    "billing-refresh-drafts": {"task": "billing.invoice_drafts_refresh", "schedule": 900.0},
    # the close's safety net: settle what it left behind, and check that nothing was
    "billing-invoices-sweep": {"task": "billing.invoices_sweep", "schedule": 3600.0},
    "billing-closed-periods-check": {"task": "billing.closed_periods_check", "schedule": 3600.0},
    "billing-stripe-reconcile": {"task": "billing.stripe_events_reconcile", "schedule": 600.0},
    "billing-payout-run": {"task": "billing.payout_run_scheduled", "schedule": 86400.0},
    # prepaid balances: zero, alerts, automatic top-ups, leases stopped after the grace
    "billing-funding-sweep": {"task": "billing.funding_sweep", "schedule": 60.0},
    # compute vouchers: expiry and fraud flags
    "vouchers-expire-due": {"task": "billing.vouchers_expire_due", "schedule": 300.0},
    "fraud-flags-compute": {"task": "billing.fraud_flags_compute", "schedule": 3600.0},
    # subsidy trail: log new evidence, sign a tree head every hour
    "trail-sign-tree-head": {"task": "billing.trail_sign_tree_head", "schedule": 3600.0},
    "trail-check": {"task": "billing.trail_check", "schedule": 86400.0},
}
# Redis redelivers a message a worker took but never acknowledged (money and capacity
# tasks ack late: only after they ran) once visibility_timeout seconds have passed. It
# must exceed the longest a task may legitimately hold its message, or a live task is
# handed to a second worker: the hard time limit, plus a margin for the moment a
# prefetched message waits for a free pool process (prefetch multiplier 1) and for
# the worker's clock. Much more than that only delays the redelivery of a crashed
# worker's money task (Redis's default 3600 s left it unacked for an hour).
CELERY_VISIBILITY_MARGIN_SECONDS = 60
CELERY_BROKER_TRANSPORT_OPTIONS = env.json(
    "CELERY_BROKER_TRANSPORT_OPTIONS",
    default={"visibility_timeout": CELERY_TASK_TIME_LIMIT + CELERY_VISIBILITY_MARGIN_SECONDS},
)
# Transactional outbox (core/outbox.py): the relay publishes a row again when it has
# not completed this long after its last publish. Same reasoning as the visibility
# timeout: a published task gets a worker within the margin and ends within the limit.
OUTBOX_REDELIVER_SECONDS = env.int(
    "OUTBOX_REDELIVER_SECONDS",
    default=CELERY_BROKER_TRANSPORT_OPTIONS.get(
        "visibility_timeout", CELERY_TASK_TIME_LIMIT + CELERY_VISIBILITY_MARGIN_SECONDS
    ),
)
OUTBOX_RETENTION_DAYS = env.int("OUTBOX_RETENTION_DAYS", default=7)
# Order-time matching runs at most once per this window (plus the run itself): the
# run starts this long after the first order placed since the last one and takes
# every order placed meanwhile. Each run reads the cheapest part of the book whatever
# the number of orders, so under a stream of placements a window of orders costs one
# run, not one each. 0: a run starts as soon as the worker is free.
MATCH_COALESCE_SECONDS = env.float("MATCH_COALESCE_SECONDS", default=0.2)
if not 0 <= MATCH_COALESCE_SECONDS <= 5:
    raise environ.ImproperlyConfigured("MATCH_COALESCE_SECONDS must be between 0 and 5")
if OUTBOX_REDELIVER_SECONDS <= 0 or CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise environ.ImproperlyConfigured(
        "OUTBOX_REDELIVER_SECONDS > 0 and CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT"
    )


# --- Cache: throttle counters (and anything else cached) ---------------------------
# Shared by every web process once Redis is there (a per-process cache would let each
# gunicorn worker grant the full rate); CACHE_REDIS_URL may name another Redis database
# than the broker's, so clearing the cache never touches queued tasks.
CACHE_REDIS_URL = env.str("CACHE_REDIS_URL", default=REDIS_URL)
if CACHE_REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "core.redis_cache.RedisCache",
            "LOCATION": CACHE_REDIS_URL,
            "KEY_PREFIX": "exchange",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Abuse limits ----------------------------------------------------------------
# Behind a TLS proxy the client's address is the last X-Forwarded-For entry added by the
# TRUSTED_PROXY_COUNT proxies in front; 0 (no proxy) uses the socket's address.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
REST_FRAMEWORK["NUM_PROXIES"] = TRUSTED_PROXY_COUNT or None
# Requests per period ("<n>/<s|min|hour|day>"), counted per scope in the cache above; a
# 429 answer carries Retry-After. Keys: THROTTLE_RATE_<SCOPE> (AUTH_TOKEN, SIGN_UP, ...).
# telemetry: an agent posts one batch every TELEMETRY_INTERVAL_SECONDS (12/min at 5 s)
# and drains its buffer in batches of up to 5,000 samples after an outage; 30/min
# leaves 2.5 times the steady rate and 150k samples a minute for catching up.
THROTTLE_RATES = {
    # per client address: username + password exchanged for a token
    "auth-token": env.str("THROTTLE_RATE_AUTH_TOKEN", default="20/min"),
    # per client address: accounts and organisations registered (page and API)
    "sign-up": env.str("THROTTLE_RATE_SIGN_UP", default="10/hour"),
    # per user: API tokens made on the account page or POST auth/tokens/
    "token-create": env.str("THROTTLE_RATE_TOKEN_CREATE", default="20/hour"),
    # per buyer organisation: orders placed (page and API)
    "orders": env.str("THROTTLE_RATE_ORDERS", default="60/min"),
    # per client address: quotes (each reads the whole live book)
    "quotes": env.str("THROTTLE_RATE_QUOTES", default="60/min"),
    # per node: telemetry batches
    "telemetry": env.str("THROTTLE_RATE_TELEMETRY", default="30/min"),
    # per organisation: webhook endpoints made or changed, test events and redeliveries
    # (each makes the exchange call a URL of the organisation's choosing)
    "webhooks": env.str("THROTTLE_RATE_WEBHOOKS", default="30/hour"),
}
for _scope, _rate in THROTTLE_RATES.items():
    if not re.fullmatch(r"[1-9][0-9]*/(s|sec|m|min|h|hour|d|day)", _rate):
        raise environ.ImproperlyConfigured(f"throttle rate {_scope}: {_rate!r} is not <n>/<period>")
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = THROTTLE_RATES

# Sign-in lockout (django-axes), for the log-in form, the admin's and POST auth/token/:
# after LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that
# pair is refused - right password or not - for LOGIN_COOLOFF_MINUTES (a failure during
# the lockout starts it again). Counted in the database; a success resets the count.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_COOLOFF_MINUTES = env.int("LOGIN_COOLOFF_MINUTES", default=15)
AXES_COOLOFF_TIME = dt.timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_IPWARE_PROXY_COUNT = TRUSTED_PROXY_COUNT or None
if TRUSTED_PROXY_COUNT:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
if AXES_FAILURE_LIMIT < 1 or LOGIN_COOLOFF_MINUTES < 1:
    raise environ.ImproperlyConfigured("LOGIN_FAILURE_LIMIT and LOGIN_COOLOFF_MINUTES ≥ 1")

# Node agent tokens stop working this many days after they were issued (rotate to renew).
NODE_TOKEN_TTL_DAYS = env.int("NODE_TOKEN_TTL_DAYS", default=365)
if NODE_TOKEN_TTL_DAYS < 1:
    raise environ.ImproperlyConfigured("NODE_TOKEN_TTL_DAYS ≥ 1")

# --- Compute vouchers: fraud-flag thresholds ---------------------------------------
# Credit codes sharing this many leading characters count as affiliated (self-dealing).
VOUCHER_AFFILIATION_PREFIX_LENGTH = env.int("VOUCHER_AFFILIATION_PREFIX_LENGTH", default=14)
VOUCHER_IDLE_UTILISATION_PERCENT = env.int("VOUCHER_IDLE_UTILISATION_PERCENT", default=15)
VOUCHER_PRICE_MEDIAN_FACTOR = env.float("VOUCHER_PRICE_MEDIAN_FACTOR", default=2.0)
VOUCHER_EXPIRY_BURST_DAYS = env.int("VOUCHER_EXPIRY_BURST_DAYS", default=7)
VOUCHER_EXPIRY_BURST_SHARE = env.float("VOUCHER_EXPIRY_BURST_SHARE", default=0.5)

# --- Telemetry, health, metering ---------------------------------------------
# The agents' reporting interval; a node silent for TELEMETRY_SILENT_INTERVALS of them is offline.
TELEMETRY_INTERVAL_SECONDS = env.float("TELEMETRY_INTERVAL_SECONDS", default=5.0)
TELEMETRY_SILENT_INTERVALS = env.int("TELEMETRY_SILENT_INTERVALS", default=3)
# At a lease's start, this many reporting intervals of silence are the agent
# starting up: neither billed to the buyer nor a fault of the provider.
AGENT_STARTUP_GRACE_INTERVALS = env.int("AGENT_STARTUP_GRACE_INTERVALS", default=2)
if AGENT_STARTUP_GRACE_INTERVALS < 0:
    raise environ.ImproperlyConfigured("AGENT_STARTUP_GRACE_INTERVALS must be 0 or more")
# Samples stamped further ahead of the exchange's clock than this are refused.
TELEMETRY_MAX_CLOCK_SKEW_SECONDS = env.int("TELEMETRY_MAX_CLOCK_SKEW_SECONDS", default=300)
# true: telemetry batches commit without waiting for the WAL flush (SET LOCAL, that
# transaction only); a PostgreSQL crash may then lose the last ~0.6 s of acknowledged
# samples. Off by default: bench/ingest.py showed no gain on the 2-core bench box.
TELEMETRY_ASYNC_COMMIT = env.bool("TELEMETRY_ASYNC_COMMIT", default=False)
# A degraded/offline node returns online after this long without a fault.
HEALTH_CLEAN_PERIOD_SECONDS = env.int("HEALTH_CLEAN_PERIOD_SECONDS", default=60)
# A simulated self-test (`exchange-agent --self-test --simulate`) verifies a node only where
# this is on: in development and the demo, never by default in production.
NODE_SELF_TEST_ACCEPT_SIMULATED = env.bool(
    "NODE_SELF_TEST_ACCEPT_SIMULATED", default=not PRODUCTION
)
# Leases on a node faulty for this long move to another offer (if the order allows).
FAILOVER_AFTER_SECONDS = env.int("FAILOVER_AFTER_SECONDS", default=60)
# Webhooks (accounts/webhooks.py): attempts per event before it fails (backoff from
# 30 s doubling, capped at 6 h: 12 attempts span about a day), failed events in a row
# that disable an endpoint, and whether loopback/private addresses (and plain http)
# may receive them: in development and the demo, never by default in production.
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=12)
WEBHOOK_DISABLE_AFTER_FAILURES = env.int("WEBHOOK_DISABLE_AFTER_FAILURES", default=5)
WEBHOOKS_ALLOW_PRIVATE = env.bool("WEBHOOKS_ALLOW_PRIVATE", default=not PRODUCTION)
if not 1 <= WEBHOOK_MAX_ATTEMPTS <= 30 or not 1 <= WEBHOOK_DISABLE_AFTER_FAILURES <= 100:
    raise environ.ImproperlyConfigured(
        "WEBHOOK_MAX_ATTEMPTS must be 1 to 30, WEBHOOK_DISABLE_AFTER_FAILURES 1 to 100"
    )
# A lease on interruptible capacity is pre-empted by a higher bid only after this notice.
PREEMPTION_NOTICE_MINUTES = env.int("PREEMPTION_NOTICE_MINUTES", default=10)
if not 0 <= PREEMPTION_NOTICE_MINUTES <= 24 * 60:
    raise environ.ImproperlyConfigured("PREEMPTION_NOTICE_MINUTES must be 0 to 1440")
# Usage records cover windows of this length, aligned to the epoch; a window is
# metered once it has been closed for METERING_GRACE_SECONDS (late, buffered samples).
METERING_WINDOW_SECONDS = env.int("METERING_WINDOW_SECONDS", default=300)
METERING_GRACE_SECONDS = env.int("METERING_GRACE_SECONDS", default=120)
# Telemetry storage (market/telemetry/storage.py). Raw samples are kept this many days,
# and longer for any not yet metered and rolled up; per-minute rollups (what the charts
# read) this many; on PostgreSQL, day partitions are created this many days ahead.
TELEMETRY_RAW_RETENTION_DAYS = env.int("TELEMETRY_RAW_RETENTION_DAYS", default=30)
TELEMETRY_ROLLUP_RETENTION_DAYS = env.int("TELEMETRY_ROLLUP_RETENTION_DAYS", default=400)
TELEMETRY_PARTITIONS_AHEAD_DAYS = env.int("TELEMETRY_PARTITIONS_AHEAD_DAYS", default=3)
for _name in (
    "TELEMETRY_RAW_RETENTION_DAYS",
    "TELEMETRY_ROLLUP_RETENTION_DAYS",
    "TELEMETRY_PARTITIONS_AHEAD_DAYS",
):
    if globals()[_name] < 1:
        raise environ.ImproperlyConfigured(f"{_name} must be 1 or more")
for _name in ("TELEMETRY_INTERVAL_SECONDS", "METERING_WINDOW_SECONDS"):
    if globals()[_name] <= 0:
        raise environ.ImproperlyConfigured(f"{_name} must be positive")
if METERING_WINDOW_SECONDS % 60:
    raise environ.ImproperlyConfigured("METERING_WINDOW_SECONDS must be whole minutes")

# --- Stripe ------------------------------------------------------------------
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="sk_test_local")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="pk_test_local")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="whsec_local")
# Empty means Stripe's real API; the embedded mode and tests point it at localstripe.
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
# Connect fields (transfer_group, transfers); off against localstripe, which rejects them.
STRIPE_CONNECT_ENABLED = env.bool("STRIPE_CONNECT_ENABLED", default=not STRIPE_API_BASE)
STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300
# The platform's paying account printed in bank batch files (付款账号).
PAYOUT_BANK_ACCOUNT = env.str("PAYOUT_BANK_ACCOUNT", default="")

# --- Subsidy trail (billing.trail) ---------------------------------------------
# The Ed25519 key that signs the trail's tree heads: a 32-byte seed, 64 hex digits
# (`python -c "import secrets; print(secrets.token_hex(32))"`). The default is the
# public demo key, refused in production (billing.checks).
TRAIL_DEMO_SIGNING_KEY = hashlib.sha256(b"compute-exchange demo trail key").hexdigest()
TRAIL_SIGNING_KEY = env.str("TRAIL_SIGNING_KEY", default=TRAIL_DEMO_SIGNING_KEY).strip().lower()
if len(TRAIL_SIGNING_KEY) != 64 or set(TRAIL_SIGNING_KEY) - set("0123456789abcdef"):
    raise environ.ImproperlyConfigured("TRAIL_SIGNING_KEY must be 64 hex digits (a 32-byte seed)")

# --- Security ----------------------------------------------------------------
# Content-Security-Policy (django-csp): only this origin's files; an inline <script> or
# <style> runs only with the request's nonce (templates: {{ request.csp_nonce }}).
# No CDN anywhere: htmx, Swagger UI (drf-spectacular-sidecar) and the CSS are served here.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        # Swagger UI's stylesheet draws its icons as data: SVGs.
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Permissions-Policy (django-permissions-policy): no page needs any of these.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "encrypted-media",
        "fullscreen",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "screen-wake-lock",
        "usb",
        "xr-spatial-tracking",
    )
}
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Logging: structured JSON lines to stdout ----------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The Stripe SDK logs every request at INFO (the payment check polls events every
        # few seconds); billing.payments logs what happens to money.
        "stripe": {"level": "WARNING"},
    },
}
