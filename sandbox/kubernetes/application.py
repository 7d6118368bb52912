"""What the emulated application's containers print, for their logs (``kubectl logs``).

The Fragalysis stack's container runs the backend's ``launch-stack.sh``: Django migrations, the superuser check,
then gunicorn and nginx. The database runs the PostgreSQL image. A container of the crash-loop fault prints the
first lines, then dies with a Python traceback (PostgreSQL: a FATAL line) ending in the fault's ``error``.
"""

from __future__ import annotations

from datetime import datetime

from sandbox.kubernetes.objects import image_reference

DEFAULT_ERROR = "django.core.exceptions.ImproperlyConfigured: Error loading psycopg2 or psycopg module"
DEFAULT_DATABASE_ERROR = 'data directory "/var/lib/postgresql/data" has invalid permissions'
_SITE = "/usr/local/lib/python3.11/site-packages"


def _is_database(image: str) -> bool:
    return image_reference(image)[0].rsplit("/", 1)[-1].startswith("postgres")


def _tag(image: str) -> str:
    suffix = image_reference(image)[1]
    return suffix[1:] if suffix.startswith(":") else suffix


def _gunicorn(when: datetime, pid: int, level: str, text: str) -> str:
    return f"[{when.strftime('%Y-%m-%d %H:%M:%S +0000')}] [{pid}] [{level}] {text}"


def _postgres(when: datetime, pid: int, level: str, text: str) -> str:
    return f"{when.strftime('%Y-%m-%d %H:%M:%S')}.{when.microsecond // 1000:03d} UTC [{pid}] {level}:  {text}"


def start_lines(image: str, when: datetime, *, crashing: bool) -> list[str]:
    """The lines a container of ``image`` prints as it starts (``crashing``: only those before its fatal error)."""
    if _is_database(image):
        lines = [
            "",
            "PostgreSQL Database directory appears to contain a database; Skipping initialization",
            "",
        ]
        if crashing:
            return lines
        return [
            *lines,
            _postgres(when, 1, "LOG", f"starting PostgreSQL {_tag(image)} on x86_64-pc-linux-gnu, 64-bit"),
            _postgres(when, 1, "LOG", 'listening on IPv4 address "0.0.0.0", port 5432'),
            _postgres(when, 1, "LOG", 'listening on Unix socket "/var/run/postgresql/.s.PGSQL.5432"'),
            _postgres(when, 28, "LOG", "database system was shut down at " + when.strftime("%Y-%m-%d %H:%M:%S UTC")),
            _postgres(when, 1, "LOG", "database system is ready to accept connections"),
        ]
    banner = f"Fragalysis stack {_tag(image)} (image {image})"
    if crashing:
        return [banner, "Running migrations..."]
    return [
        banner,
        "Running migrations...",
        "Operations to perform:",
        "  Apply all migrations: admin, api, auth, contenttypes, hypothesis, scoring, sessions, viewer",
        "Running migrations:",
        "  No migrations to apply.",
        "Creating superuser...",
        "Superuser creation skipped.",
        "Starting Gunicorn....",
        "Testing nginx config...",
        "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok",
        "nginx: configuration file /etc/nginx/nginx.conf test is successful",
        "Running nginx...",
        _gunicorn(when, 27, "INFO", "Starting gunicorn 22.0.0"),
        _gunicorn(when, 27, "INFO", "Listening at: unix:django_app.sock (27)"),
        _gunicorn(when, 27, "INFO", "Using worker: sync"),
        *(_gunicorn(when, pid, "INFO", f"Booting worker with pid: {pid}") for pid in (29, 30, 31)),
    ]


def crash_lines(image: str, when: datetime, error: str | None) -> list[str]:
    """The last lines a crashing container of ``image`` prints before it exits with code 1."""
    if _is_database(image):
        return [_postgres(when, 1, "FATAL", error or DEFAULT_DATABASE_ERROR)]
    return [
        "Traceback (most recent call last):",
        '  File "/code/manage.py", line 22, in <module>',
        "    main()",
        '  File "/code/manage.py", line 18, in main',
        "    execute_from_command_line(sys.argv)",
        f'  File "{_SITE}/django/core/management/__init__.py", line 442, in execute_from_command_line',
        "    utility.execute()",
        f'  File "{_SITE}/django/core/management/__init__.py", line 416, in execute',
        "    django.setup()",
        f'  File "{_SITE}/django/__init__.py", line 24, in setup',
        "    apps.populate(settings.INSTALLED_APPS)",
        f'  File "{_SITE}/django/apps/registry.py", line 116, in populate',
        "    app_config.import_models()",
        error or DEFAULT_ERROR,
    ]
