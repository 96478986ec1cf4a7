"""Django's database sessions, with one statement per write (``SESSION_ENGINE``).

Every arrival at a study stores a session, so its statements are part of what an entry costs
(``tests/web/crowd/test_entry_cost.py``). Django checks that a newly drawn key is free (a SELECT) before it
INSERTs the session; a key is 32 random characters of 36 (about 165 bits), so the check is skipped here:
the INSERT itself still refuses a key that is taken (``must_create``), and ``create`` then draws another.
Django also wraps the one INSERT or UPDATE in a transaction (BEGIN, COMMIT); in autocommit a single
statement is atomic by itself, so outside a transaction it is sent alone.
"""

from __future__ import annotations

from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError, UpdateError
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db import DatabaseError, IntegrityError, router, transaction
from django.utils.crypto import get_random_string


class SessionStore(DatabaseSessionStore):
    """Database sessions whose new keys are not looked up before they are stored, written by one
    statement."""

    def _get_new_session_key(self) -> str:
        return get_random_string(32, VALID_KEY_CHARS)

    def save(self, must_create: bool = False) -> None:
        """Django's ``save``; outside a transaction without its BEGIN and COMMIT."""
        if self.session_key is None:
            return self.create()
        using = router.db_for_write(self.model)
        if transaction.get_connection(using).in_atomic_block:
            return super().save(must_create)
        obj = self.create_model_instance(self._get_session(no_load=must_create))
        try:
            obj.save(force_insert=must_create, force_update=not must_create, using=using)
        except IntegrityError:
            if must_create:
                raise CreateError from None
            raise
        except DatabaseError:
            if not must_create:
                raise UpdateError from None
            raise
        return None
