"""The closed loop's scratch PostgreSQL database, created beside the site's and dropped afterwards unless
kept, and the child process that runs the stages on it.

Why a child process: a process's Django settings, database connections and default storage are fixed by
the environment it starts with, and the stages must never touch the site's own database. A child started
with DATABASE_URL and MEDIA_ROOT set to the scratch ones is configured on them from its first line;
``SCRATCH_ENV`` names the database it may run on, and the command refuses to run the stages anywhere else.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from webapp import harness
from webapp.simcrowd.loop.config import log

SCRATCH_ENV = "CLOSED_LOOP_SCRATCH_DB"  # set only in the child: the scratch database's name


def run_on_scratch(connection, argv: list[str], media: Path, keep: bool) -> int:
    """``manage.py closed_loop ARGV`` in a child process on a new database beside ``connection``'s (a
    PostgreSQL one: CommandError otherwise) with MEDIA_ROOT ``media``; the child's exit status. The database
    is dropped afterwards, whatever happened, unless ``keep``."""
    if connection.vendor != "postgresql":
        raise CommandError("closed_loop needs DATABASE_URL=postgres://... (the scratch database goes "
                           "beside it)")
    admin = harness.db_url({**connection.settings_dict, "NAME": "postgres"})
    name = f"closed_loop_{secrets.token_hex(4)}"
    harness.admin_sql(admin, f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "DATABASE_URL": harness.scratch_url(admin, name), "MEDIA_ROOT": str(media),
               "CROWD_RATE_LIMIT": "0",  # every simulated participant comes from 127.0.0.1
               SCRATCH_ENV: name}
        manage = Path(settings.BASE_DIR) / "manage.py"
        return subprocess.run([sys.executable, str(manage), "closed_loop", *argv], env=env).returncode
    finally:
        if keep:
            log(f"kept scratch database {name}")
        else:
            harness.admin_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
