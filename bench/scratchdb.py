"""Scratch PostgreSQL databases for the benches: one statement as the server's admin, and a URL beside it."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def db_url(admin_url: str, name: str) -> str:
    """``admin_url`` with its database name replaced by ``name``."""
    u = urlsplit(admin_url)
    return urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def admin_sql(admin_url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
    import psycopg2

    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as c:
            c.execute(sql)
    finally:
        conn.close()
