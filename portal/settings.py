"""Settings for the private index portal: one file, every value from the environment.

Every variable read here is listed in .env.example. Defaults are the laptop run (local driver,
SQLite, the machine's Redis); production sets DEBUG off and supplies real values.

Grouped by concern: Django core, security, database, sign-in, Redis and RQ, provisioning (and
the local driver), packages, certificate and health checks, the Azure driver, certificates on
the Azure path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from portal.job_table import QUEUES

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- Django core
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-laptop-only-key-never-used-with-debug-off"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Where the portal itself is reachable; used in links the portal hands out (sign-in redirect).
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL", "http://127.0.0.1:8000")

VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var")))
if not env_str("DATABASE_URL"):
    # The default SQLite file lives there: SQLite cannot create its folder ("unable to open database file").
    VAR_DIR.mkdir(parents=True, exist_ok=True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "template_partials",
    "django_rq",
    "portal",
    "provisioning",
    "packages_ui",
    "portal.auth.apps.PortalAuthConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "portal.middleware.ContentSecurityPolicyMiddleware",
    "portal.middleware.DependencyOutageMiddleware",
]

if not DEBUG:
    # Production serves the collected static files itself (no CDN); runserver does it when DEBUG.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "portal.context_processors.portal",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    }
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # The Azure SDK logs request headers at INFO; keep it quiet so nothing sensitive leaks.
        "azure": {"level": "WARNING"},
    },
}

# --- Security. Production (DEBUG off) gets secure cookies and HSTS; the laptop run is plain HTTP.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY") else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# htmx and the upload script are served from our own origin; nothing inline, nothing external.
CONTENT_SECURITY_POLICY = env_str(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self' https:; base-uri 'none'",
)

# --- Database
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
# Pages and commands fail in seconds, with a message, when PostgreSQL does not answer.
DATABASE_CONNECT_TIMEOUT_SECONDS = env_int("DATABASE_CONNECT_TIMEOUT_SECONDS", 5)
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", DATABASE_CONNECT_TIMEOUT_SECONDS)

# --- Sign-in with Microsoft Entra ID
# The portal signs users in with Microsoft Entra ID through MSAL's auth-code flow (PKCE, nonce)
# and validates the id_token itself. Locally, `make run` points these at devtools' provider.
AUTH_PASSWORD_VALIDATORS: list[dict] = []
# The portal's own sign-in page (Sign in with Microsoft), not the Django admin's.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
ENTRA_TENANT_ID = env_str("ENTRA_TENANT_ID")
ENTRA_CLIENT_ID = env_str("ENTRA_CLIENT_ID")
ENTRA_CLIENT_SECRET = env_str("ENTRA_CLIENT_SECRET")
# A certificate instead of a secret: a PFX file (and its passphrase) uploaded to the app registration.
ENTRA_CLIENT_CERTIFICATE_PFX = env_str("ENTRA_CLIENT_CERTIFICATE_PFX")
ENTRA_CLIENT_CERTIFICATE_PASSPHRASE = env_str("ENTRA_CLIENT_CERTIFICATE_PASSPHRASE")
ENTRA_AUTHORITY = env_str("ENTRA_AUTHORITY", f"https://login.microsoftonline.com/{ENTRA_TENANT_ID}").rstrip("/")
ENTRA_REDIRECT_URI = env_str("ENTRA_REDIRECT_URI", f"{PORTAL_BASE_URL}/auth/callback")
ENTRA_POST_LOGOUT_REDIRECT_URI = env_str("ENTRA_POST_LOGOUT_REDIRECT_URI", f"{PORTAL_BASE_URL}/auth/signed-out/")
# Only for a local provider with its own CA; the system check refuses it with DEBUG off.
ENTRA_CA_BUNDLE = env_str("ENTRA_CA_BUNDLE")
ENTRA_HTTP_TIMEOUT_SECONDS = env_float("ENTRA_HTTP_TIMEOUT_SECONDS", 10.0)
# Clock skew tolerated on exp/nbf/iat of the id_token.
ENTRA_CLOCK_SKEW_SECONDS = env_int("ENTRA_CLOCK_SKEW_SECONDS", 120)
# App role values (the `roles` claim) and what they mean in the portal.
ENTRA_ADMIN_ROLE = env_str("ENTRA_ADMIN_ROLE", "Portal.Admin")
ENTRA_TEAM_LEAD_ROLE = env_str("ENTRA_TEAM_LEAD_ROLE", "Portal.TeamLead")
ENTRA_PUBLISHER_ROLE = env_str("ENTRA_PUBLISHER_ROLE", "Portal.Publisher")
# App role → Django group, synced on every sign-in (added when present, removed when gone).
ENTRA_ROLE_GROUPS = dict(
    item.split("=", 1)
    for item in env_list(
        "ENTRA_ROLE_GROUPS",
        f"{ENTRA_ADMIN_ROLE}=Portal.Admin,{ENTRA_TEAM_LEAD_ROLE}=Portal.TeamLead,"
        f"{ENTRA_PUBLISHER_ROLE}=Portal.Publisher",
    )
)

# --- Redis and RQ
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# A Redis that is down or hung costs a page or command this long, not forever (RQ's workers
# raise the read timeout above their blocking dequeue themselves).
REDIS_TIMEOUT_SECONDS = env_float("REDIS_TIMEOUT_SECONDS", 5.0)


def _with_redis_timeouts(url: str) -> str:
    if "socket_timeout" in url:
        return url
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}socket_connect_timeout={REDIS_TIMEOUT_SECONDS}&socket_timeout={2 * REDIS_TIMEOUT_SECONDS}"


# The queues, like every job's queue and timeout, come from the one table of jobs.
RQ_QUEUES = {
    name: {"URL": _with_redis_timeouts(REDIS_URL), "DEFAULT_TIMEOUT": timeout} for name, timeout in QUEUES.items()
}
# PortalWorker heartbeats jobs every 10 s and rides out Redis restarts (portal/workers.py).
RQ = {"COMMIT_MODE": "on_db_commit", "WORKER_CLASS": "portal.workers.PortalWorker"}
RQ_SHOW_ADMIN_LINK = True

# --- Provisioning
PROVISIONING_DRIVER = env_str("PROVISIONING_DRIVER", "provisioning.drivers.local.LocalDriver")
# Requests can wait for an admin's approval before anything is built.
INDEX_APPROVAL_REQUIRED = env_bool("INDEX_APPROVAL_REQUIRED", False)
# Sizes offered in the request form: CPU cores, memory GiB and package share quota GiB.
INDEX_SIZES = {
    "small": {"label": "Small — 1 vCPU, 1.5 GiB, 10 GiB packages", "cpu": 1.0, "memory_gb": 1.5, "quota_gb": 10},
    "medium": {"label": "Medium — 2 vCPU, 4 GiB, 50 GiB packages", "cpu": 2.0, "memory_gb": 4.0, "quota_gb": 50},
    "large": {"label": "Large — 4 vCPU, 8 GiB, 200 GiB packages", "cpu": 4.0, "memory_gb": 8.0, "quota_gb": 200},
}
INDEX_DEFAULT_SIZE = "small"
# Images are pinned by version: the seed's `:latest` changed under people's feet. The Azure
# driver needs them pinned by digest (registry/repository@sha256:...), see README "Images".
CADDY_IMAGE = env_str("CADDY_IMAGE", "docker.io/library/caddy:2.11.7-alpine")
PYPISERVER_IMAGE = env_str("PYPISERVER_IMAGE", "docker.io/pypiserver/pypiserver:v2.4.2")
# How long provisioning waits for the index to answer its health check.
INDEX_HEALTH_TIMEOUT_SECONDS = env_float("INDEX_HEALTH_TIMEOUT_SECONDS", 30.0)
# The per-index job lock expires this long after a worker dies (a heartbeat renews it while alive).
INDEX_LOCK_TTL_SECONDS = env_float("INDEX_LOCK_TTL_SECONDS", 30.0)
# How often the scheduler re-enqueues indexes whose worker died, and brings vanished ones back.
# With the 30 s heartbeat limit this keeps a killed worker's index waiting at most ~1 minute.
RECONCILE_INTERVAL_SECONDS = env_int("RECONCILE_INTERVAL_SECONDS", 15)
# A step whose driver call fails transiently (Azure did not answer, a port still busy) is tried
# again in the same job, this many times in all, waiting BACKOFF, then twice that, ... up to MAX
# seconds in between; the step on the index page says so meanwhile. Permanent errors fail at once.
STEP_RETRY_ATTEMPTS = env_int("STEP_RETRY_ATTEMPTS", 3)
STEP_RETRY_BACKOFF_SECONDS = env_float("STEP_RETRY_BACKOFF_SECONDS", 2.0)
STEP_RETRY_BACKOFF_MAX_SECONDS = env_float("STEP_RETRY_BACKOFF_MAX_SECONDS", 8.0)
# Tests only: a folder of pause files that hold a step at a named point (provisioning/pause.py).
STEP_PAUSE_DIR = env_str("STEP_PAUSE_DIR")

# Local driver: pypiserver and Caddy as child processes, three folders standing for the shares.
LOCAL_DRIVER_DATA_DIR = Path(env_str("LOCAL_DRIVER_DATA_DIR", str(VAR_DIR / "indexes")))
# Keep it below the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range, usually
# 32768-60999): there a connect to a closed port can succeed by connecting to itself.
LOCAL_DRIVER_PORT_RANGE = env_str("LOCAL_DRIVER_PORT_RANGE", "20000-20999")
LOCAL_DRIVER_BIN_DIR = Path(env_str("LOCAL_DRIVER_BIN_DIR", str(Path(sys.executable).parent)))

# --- Packages: upload limits, zip-bomb caps, refresh and served check, integrity check, PyPI mirror.
# Largest distribution accepted (upload and mirror). Caddy in front of the index takes 2 GB.
PACKAGES_MAX_UPLOAD_BYTES = env_int("PACKAGES_MAX_UPLOAD_BYTES", 1024 * 1024 * 1024)
# Zip bombs: caps on an archive's total uncompressed size, its entry count, and the ratio of
# uncompressed to compressed size (only applied above 16 MB uncompressed).
PACKAGES_MAX_UNCOMPRESSED_BYTES = env_int("PACKAGES_MAX_UNCOMPRESSED_BYTES", 4 * 1024 * 1024 * 1024)
PACKAGES_MAX_ARCHIVE_ENTRIES = env_int("PACKAGES_MAX_ARCHIVE_ENTRIES", 50_000)
PACKAGES_MAX_COMPRESSION_RATIO = env_int("PACKAGES_MAX_COMPRESSION_RATIO", 200)
# Uploads are streamed to a temporary file; only this much of a multipart body is kept in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 256 * 1024)
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR") or None
# After a refresh, how long to wait for every new file to appear on /simple/<project>/.
PACKAGES_SERVED_CHECK_TIMEOUT_SECONDS = env_float("PACKAGES_SERVED_CHECK_TIMEOUT_SECONDS", 30.0)
PACKAGES_REFRESH_JOB_TIMEOUT_SECONDS = env_int("PACKAGES_REFRESH_JOB_TIMEOUT_SECONDS", 600)
# The integrity check reads and hashes every file on each index's package share.
PACKAGES_INTEGRITY_CRON = env_str("PACKAGES_INTEGRITY_CRON", "17 * * * *")
PACKAGES_INTEGRITY_JOB_TIMEOUT_SECONDS = env_int("PACKAGES_INTEGRITY_JOB_TIMEOUT_SECONDS", 3600)
# Mirror from PyPI: where pip downloads from, and how long one mirror job may take.
PACKAGES_MIRROR_INDEX_URL = env_str("PACKAGES_MIRROR_INDEX_URL", "https://pypi.org/simple/")
PACKAGES_MIRROR_TIMEOUT_SECONDS = env_int("PACKAGES_MIRROR_TIMEOUT_SECONDS", 900)
PACKAGES_MIRROR_MAX_REQUIREMENTS = env_int("PACKAGES_MIRROR_MAX_REQUIREMENTS", 20)

# --- Certificate and health checks, and the admin dashboard's cost estimate.
# A certificate expiring within this many days is flagged "expiring" (and counted in the banner).
CERT_WARNING_DAYS = env_int("CERT_WARNING_DAYS", 14)
# Fleet check: connections at once, and the budget for one host (connect + both handshakes).
CERT_CHECK_CONCURRENCY = env_int("CERT_CHECK_CONCURRENCY", 32)
CERT_CHECK_TIMEOUT_SECONDS = env_float("CERT_CHECK_TIMEOUT_SECONDS", 5.0)
# Generous: every round of concurrent checks may take the whole per-host budget.
CERT_CHECK_FLEET_JOB_TIMEOUT_SECONDS = int(600 + CERT_CHECK_TIMEOUT_SECONDS * 100)
# Checks kept per index (older ones are deleted).
CERT_CHECK_HISTORY = env_int("CERT_CHECK_HISTORY", 20)
# When `manage.py scheduler provisioning.cron` runs the fleet check (cron syntax, UTC).
CERT_CHECK_CRON = env_str("CERT_CHECK_CRON", "*/30 * * * *")
DASHBOARD_PAGE_SIZE = env_int("DASHBOARD_PAGE_SIZE", 50)
# Price table for the monthly estimate (pay-as-you-go list prices; set your region's and
# contract's). ACI bills vCPU and memory per second the group exists; shares per provisioned GiB.
PRICE_TABLE = {
    "currency": env_str("PRICE_CURRENCY", "USD"),
    "aci_vcpu_second": env_float("PRICE_ACI_VCPU_SECOND", 0.0000135),
    "aci_gb_second": env_float("PRICE_ACI_GB_SECOND", 0.0000015),
    "file_share_gib_month": env_float("PRICE_FILE_SHARE_GIB_MONTH", 0.06),
}

# --- Azure driver. PROVISIONING_DRIVER=provisioning.drivers.azure.AzureDriver uses these.
# Credentials come from DefaultAzureCredential: managed identity in Azure, AZURE_TENANT_ID /
# AZURE_CLIENT_ID / AZURE_CLIENT_SECRET (+ AZURE_AUTHORITY_HOST) from the environment, or `az login`.
AZURE_SUBSCRIPTION_ID = env_str("AZURE_SUBSCRIPTION_ID")
AZURE_LOCATION = env_str("AZURE_LOCATION", "westeurope")
# "shared": every index in AZURE_RESOURCE_GROUP (created if missing, never deleted);
# "per-index": one group per index named AZURE_RESOURCE_GROUP-<index>-<hash>, deleted on teardown.
AZURE_RESOURCE_GROUP_POLICY = env_str("AZURE_RESOURCE_GROUP_POLICY", "shared")
AZURE_RESOURCE_GROUP = env_str("AZURE_RESOURCE_GROUP", "private-indexes")
# Standard_* (StorageV2 accounts) allow small shares; Premium_* and the provisioned v2 SKUs use
# FileStorage accounts with 100 / 32 GiB minimum shares. The account kind follows from the SKU.
AZURE_STORAGE_SKU = env_str("AZURE_STORAGE_SKU", "Standard_LRS")
# The registry the containers pull from (e.g. myregistry.azurecr.io), with a user-assigned managed
# identity that has AcrPull on it (its resource id), or a user name and password.
AZURE_REGISTRY_SERVER = env_str("AZURE_REGISTRY_SERVER")
AZURE_REGISTRY_IDENTITY = env_str("AZURE_REGISTRY_IDENTITY")
AZURE_REGISTRY_USERNAME = env_str("AZURE_REGISTRY_USERNAME")
AZURE_REGISTRY_PASSWORD = env_str("AZURE_REGISTRY_PASSWORD")
# Who may reuse a released DNS name label: TenantReuse adds a hash to the host name.
AZURE_DNS_LABEL_SCOPE = env_str("AZURE_DNS_LABEL_SCOPE", "TenantReuse")
# Longest wait for the containers to run (or a restart to show); crash loops and failed mounts
# fail sooner, with the container events and the last AZURE_LOG_TAIL_LINES of each log.
AZURE_STARTUP_TIMEOUT_SECONDS = env_float("AZURE_STARTUP_TIMEOUT_SECONDS", 180.0)
AZURE_LOG_TAIL_LINES = env_int("AZURE_LOG_TAIL_LINES", 20)
# Restarts of a container that is not running, seen while waiting, that count as a crash loop.
AZURE_CRASH_LOOP_RESTARTS = env_int("AZURE_CRASH_LOOP_RESTARTS", 3)
# Mixed into the hash in resource names, so two portals (staging, production) never collide.
AZURE_NAME_SALT = env_str("AZURE_NAME_SALT")
AZURE_ARM_BASE_URL = env_str("AZURE_ARM_BASE_URL", "https://management.azure.com")
AZURE_FILE_ENDPOINT = env_str("AZURE_FILE_ENDPOINT", "https://{account}.file.core.windows.net")
AZURE_CA_BUNDLE = env_str("AZURE_CA_BUNDLE")  # empty: the system's trust store
AZURE_DISABLE_INSTANCE_DISCOVERY = env_bool("AZURE_DISABLE_INSTANCE_DISCOVERY", False)
AZURE_LRO_TIMEOUT_SECONDS = env_float("AZURE_LRO_TIMEOUT_SECONDS", 900.0)
AZURE_POLLING_INTERVAL_SECONDS = env_float("AZURE_POLLING_INTERVAL_SECONDS", 5.0)
AZURE_RETRY_TOTAL = env_int("AZURE_RETRY_TOTAL", 10)
AZURE_RETRY_BACKOFF_FACTOR = env_float("AZURE_RETRY_BACKOFF_FACTOR", 0.8)
AZURE_CONNECTION_TIMEOUT_SECONDS = env_float("AZURE_CONNECTION_TIMEOUT_SECONDS", 20.0)
AZURE_READ_TIMEOUT_SECONDS = env_float("AZURE_READ_TIMEOUT_SECONDS", 120.0)
AZURE_FILE_RETRY_TOTAL = env_int("AZURE_FILE_RETRY_TOTAL", 3)
AZURE_FILE_RETRY_BACKOFF_SECONDS = env_float("AZURE_FILE_RETRY_BACKOFF_SECONDS", 15.0)
AZURE_FILE_MAX_CONCURRENCY = env_int("AZURE_FILE_MAX_CONCURRENCY", 4)

# --- Certificates on the Azure path: the ACME CA Caddy orders each index's certificate from.
# Let's Encrypt production by default; ACME_STAGING=1 switches to Let's Encrypt's staging CA
# (untrusted certificates, generous rate limits: set ACME_ISSUER_ROOTS to its roots too).
LETSENCRYPT_DIRECTORY_URL = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING_DIRECTORY_URL = "https://acme-staging-v02.api.letsencrypt.org/directory"
ACME_STAGING = env_bool("ACME_STAGING", False)
ACME_DIRECTORY_URL = env_str("ACME_DIRECTORY_URL") or (
    LETSENCRYPT_STAGING_DIRECTORY_URL if ACME_STAGING else LETSENCRYPT_DIRECTORY_URL
)
# The contact the CA writes to about expiring certificates and account problems.
ACME_EMAIL = env_str("ACME_EMAIL")
# Test CAs only (pebble): the PEM file, as Caddy sees it, that signs the ACME server's HTTPS.
ACME_CA_ROOT = env_str("ACME_CA_ROOT")
# PEM file of the roots an index certificate must chain to before the index is Ready (and that
# clients are told to trust); empty: the system trust store, right for Let's Encrypt production.
ACME_ISSUER_ROOTS = env_str("ACME_ISSUER_ROOTS")
# How long provisioning waits for Caddy to hold a valid certificate for the index's host name.
ACME_CERTIFICATE_TIMEOUT_SECONDS = env_float("ACME_CERTIFICATE_TIMEOUT_SECONDS", 300.0)
