"""All or nothing for commands that write rows and media files together.

``with staged_atomic() as stage:`` opens one database transaction and a private staging folder,
``MEDIA_ROOT/.staging/<host>:<pid>:<random>/``. Files are written there with ``stage.write(name, data)``
(``name`` relative to MEDIA_ROOT, as a FileField stores it). When the block ends without an exception,
the files are moved to their names under MEDIA_ROOT (``os.replace``: same file system, each move atomic)
as the last step before the transaction commits; when it raises, the transaction rolls back and the
staging folder is removed, so MEDIA_ROOT holds no file of the failed run.

Why just before the commit and not in ``transaction.on_commit``: a process killed between the commit and
the moves would leave rows naming files that do not exist (a broken study); killed between the moves and
the commit it leaves only files that no row names (content-addressed or random names, never served). A
process killed while writing leaves its staging folder, which the next ``staged_atomic`` removes (its
process on this host is gone); ``.staging`` is never read by the site. Inside an enclosing atomic block
(``load_demo``) the files move in when this block ends; if the enclosing one then rolls back they stay,
unreferenced.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import transaction

STAGING_DIR = ".staging"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prefix() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:"


def sweep_stale(root: Path) -> None:
    """Remove staging folders of this host whose process no longer runs (left by a killed command)."""
    host = socket.gethostname()
    for d in root.iterdir():
        parts = d.name.split(":")
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _alive(int(parts[1])):
            shutil.rmtree(d, ignore_errors=True)


class Stage:
    """Files waiting for their transaction: written under a private folder, moved in by ``publish``."""

    def __init__(self) -> None:
        self.media = Path(settings.MEDIA_ROOT)
        root = self.media / STAGING_DIR
        root.mkdir(parents=True, exist_ok=True)
        sweep_stale(root)
        self.dir = Path(tempfile.mkdtemp(dir=root, prefix=_prefix()))
        self.names: list[str] = []

    def path(self, name: str) -> Path:
        """Where ``name`` is while staged."""
        return self.dir / name

    def write(self, name: str, data: bytes) -> str:
        """Stage ``data`` to become ``MEDIA_ROOT/name``; returns ``name``."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o644)
        self.names.append(name)
        return name

    def read(self, name: str) -> bytes:
        """The bytes of ``name``: staged if it was written here, else the file under MEDIA_ROOT."""
        staged = self.path(name)
        return (staged if staged.is_file() else self.media / name).read_bytes()

    def publish(self) -> None:
        """Move every staged file to its place under MEDIA_ROOT, then remove the staging folder."""
        for name in self.names:
            target = self.media / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path(name), target)
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def staged_atomic() -> Iterator[Stage]:
    """One transaction plus a :class:`Stage`: both applied together, or neither."""
    stage = Stage()
    try:
        with transaction.atomic():
            yield stage
            stage.publish()
    finally:
        stage.discard()
