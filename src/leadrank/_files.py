"""Atomic file writes: a reader never sees a half-written file.

A write that fails on the file system (permission denied, a folder or a file in the way, a
read-only or full disk) raises :class:`FileAccessError`, which names the path and what to do,
and leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from leadrank.errors import EnvironmentProblem, LeadrankError


class FileAccessError(EnvironmentProblem, OSError):
    """A file or folder that cannot be read or written: permissions, a full or read-only disk, a folder in the way."""


def cannot_write(path: str | os.PathLike[str], exc: BaseException) -> FileAccessError:
    """The error for a failed write of ``path``, caused by ``exc`` (an ``OSError`` or a database's I/O error)."""
    return FileAccessError(f"cannot write {path}: {_reason(exc)}; choose a writable folder with free space")


def cannot_read(path: str | os.PathLike[str], exc: BaseException) -> FileAccessError:
    """The error for a failed read of ``path``, caused by ``exc``."""
    return FileAccessError(f"cannot read {path}: {_reason(exc)}; check that it is a readable file (permissions, a complete copy)")


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched; an
    ``OSError`` (here or in the ``with`` block, which writes the temporary file) becomes a
    :class:`FileAccessError` naming ``path``. Temporary files of ``path`` left by a killed
    writer are removed first (one writer per path at a time).
    """
    target = Path(path)
    try:
        tmp = _temporary_beside(target)
    except OSError as exc:
        raise cannot_write(target, exc) from exc
    try:
        yield tmp
        if tmp.exists():  # mkstemp creates 0600; give the file the permissions a plain open() would
            tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, target)
    except LeadrankError:
        raise
    except OSError as exc:
        raise cannot_write(target, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _temporary_beside(target: Path) -> Path:
    """A new empty temporary file in ``target``'s folder (made if missing), after removing stale ones."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp_name)


def staging_dir(prefix: str, parent: Path) -> Path:
    """A new temporary folder in ``parent`` with the permissions of a plain mkdir (mkdtemp's are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    folder.chmod(0o777 & ~_umask())
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
