"""Settings for the 2AFC site, all from the environment (12-factor).

DEBUG=1 (default) is development on SQLite; DEBUG=0 is production: SECRET_KEY and ALLOWED_HOSTS are
required and ``manage.py check --deploy`` is clean. DATABASE_URL picks the database (postgres://...).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: str) -> bool:
    value = os.environ.get(name, default).strip().lower()
    if value not in {"1", "true", "yes", "on", "0", "false", "no", "off", ""}:
        raise ImproperlyConfigured(f"{name}: expected 1/0 (true/false, yes/no, on/off), got {value!r}")
    return value in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int, low: int = 0) -> int:
    """An integer setting; a malformed or too small value is one ImproperlyConfigured line naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected an integer, got {raw!r}") from None
    if value < low:
        raise ImproperlyConfigured(f"{name}: expected an integer >= {low}, got {value}")
    return value


def _env_list(name: str, default: str = "") -> list[str]:
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


DEBUG = _env_bool("DEBUG", "1")

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG=0")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789abcdef"

ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_tasks_db",
    "webapp.stimuli",
    "webapp.experiments",
    "webapp.crowd",
    "webapp.lab",
    "webapp.recruit",
    "webapp.simcrowd",
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
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=60,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    # Several participants at once on the embedded default: every transaction takes the write lock when it
    # begins (IMMEDIATE), so two never both read and then fail to upgrade ("database is locked"); a writer
    # waits up to 20 s for the lock instead of failing; WAL lets readers go on beside the one writer.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE", "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# Lets two test runs share one PostgreSQL server without fighting over the default "test_<name>" database.
if os.environ.get("TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_NAME"]}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# The languages participant pages can be shown in: a study's file picks one (``language:``); the researcher
# pages stay English. Their catalogs are webapp/crowd/locale/ (compiled .mo files are committed).
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
MEDIA_URL = "/media/"
MEDIA_ROOT = os.environ.get("MEDIA_ROOT", str(BASE_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Background tasks (exports from the dashboard and the API): django-tasks with its database backend, run by
# `manage.py db_worker` (started by `make run` and `make serve-prod`); no broker.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

LOGIN_URL = "lab:login"
LOGIN_REDIRECT_URL = "/lab/"
LOGOUT_REDIRECT_URL = "lab:login"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
SPECTACULAR_SETTINGS = {"TITLE": "2AFC perceptual lab API", "VERSION": "1.0.0"}

# The participant API takes tiny JSON bodies; anything bigger is refused (413).
DATA_UPLOAD_MAX_MEMORY_SIZE = _env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 64 * 1024)
CROWD_MAX_BODY_BYTES = _env_int("CROWD_MAX_BODY_BYTES", 4 * 1024)
# import_images refuses image files bigger than this (checked before reading; the pixel count is
# capped separately by Pillow's decompression-bomb guard).
STIMULI_MAX_IMAGE_BYTES = _env_int("STIMULI_MAX_IMAGE_BYTES", 64 * 1024 * 1024)
# Entry-point rate limit per client IP: CROWD_RATE_LIMIT requests per CROWD_RATE_WINDOW seconds.
CROWD_RATE_LIMIT = _env_int("CROWD_RATE_LIMIT", 30)
CROWD_RATE_WINDOW = _env_int("CROWD_RATE_WINDOW", 60, low=1)
# MTurk turkSubmitTo values accepted from entry links (anything else is refused: no open redirect).
CROWD_MTURK_SUBMIT_HOSTS = _env_list(
    "CROWD_MTURK_SUBMIT_HOSTS", "https://www.mturk.com,https://workersandbox.mturk.com"
)
# Who may frame the participant pages of an MTurk study (CSP frame-ancestors): MTurk's worker sites. Every
# other page, and every page of other studies, answers X-Frame-Options: DENY.
CROWD_MTURK_FRAME_ANCESTORS = _env_list(
    "CROWD_MTURK_FRAME_ANCESTORS", "https://worker.mturk.com,https://workersandbox.mturk.com,https://www.mturk.com"
)
# The site's public address (https://lab.example.org): study links sent to MTurk and Prolific start with it.
SITE_URL = os.environ.get("SITE_URL", "").rstrip("/")
# Prolific's API (manage.py prolific, the study page); its token comes from the environment, never stored.
PROLIFIC_API_URL = os.environ.get("PROLIFIC_API_URL", "https://api.prolific.com/api/v1/")
# Behind nginx (deploy/nginx/lab.conf): the stimulus images are sent by nginx from this internal location
# (X-Accel-Redirect to PREFIX + the served copy's file name) once the view has authorised the request.
# Empty: the view sends the file itself.
SERVED_X_ACCEL_REDIRECT = os.environ.get("SERVED_X_ACCEL_REDIRECT", "").strip()
if SERVED_X_ACCEL_REDIRECT and not (SERVED_X_ACCEL_REDIRECT.startswith("/")
                                    and SERVED_X_ACCEL_REDIRECT.endswith("/")):
    raise ImproperlyConfigured(f"SERVED_X_ACCEL_REDIRECT: expected a path like /_served/, got "
                               f"{SERVED_X_ACCEL_REDIRECT!r}")
# Pseudonymous platform ids (Prolific/MTurk worker ids) are replaced by random ones this many days after a
# participant's last assignment (manage.py erase_platform_ids, run daily by a timer); 0 = keep them.
CROWD_ERASE_PLATFORM_IDS_AFTER_DAYS = _env_int("CROWD_ERASE_PLATFORM_IDS_AFTER_DAYS", 0)
# Behind N trusted reverse proxies, the client IP for rate limiting is taken from X-Forwarded-For.
CROWD_TRUSTED_PROXY_HOPS = _env_int("CROWD_TRUSTED_PROXY_HOPS", 0)

# The cache (the entry rate limit's counters): Redis when REDIS_URL is set, shared by every server process
# and machine, which production needs; else an in-process LocMem cache, enough for one embedded process.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "lab")}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "webapp"}}

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", "1")
    # SECURE_SSL_REDIRECT=0 / SECURE_COOKIES=0 only for plain-HTTP loopback benchmarks and tests.
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _env_bool("SECURE_COOKIES", "1")
    SECURE_HSTS_SECONDS = _env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
