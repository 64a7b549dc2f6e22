"""Settings of the demo project, a heritage foundation's website."""

from __future__ import annotations

from pathlib import Path

from testproject.database import database_settings

BASE_DIR = Path(__file__).resolve().parent.parent

# Demo only: this key protects nothing.
SECRET_KEY = "django-insecure-resetdb-demo"
DEBUG = True
ALLOWED_HOSTS: list[str] = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_resetdb",
    "testproject.account",
    "testproject.catalog",
    "testproject.event",
    "testproject.sales",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "testproject.urls"

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

DATABASES = {"default": database_settings(BASE_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "account.User"

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

DJANGO_RESETDB = {
    "SEEDS": [
        "testproject.seeds.create_sample_users",
        "volunteers",
        "catalog",
        "events",
        "sales",
    ],
}
