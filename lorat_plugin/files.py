"""Files that appear whole or not at all, with the permissions any other new file would get.

Every result, record, checkpoint, state and generated annotation of the project is written through
:func:`atomic_path`: the data goes to a hidden temporary file beside the target, is flushed to disk, and is renamed
onto the target (``os.replace`` is atomic on POSIX and Windows), so a reader sees the old file or the whole new one.
The file gets the mode any other new file would (``0o666`` less the umask), whatever mode its writer chose
(safetensors and ``mkstemp`` use ``0o600``), so colleagues and upload jobs can read what a run wrote. An interrupted
write leaves no temporary file behind.
"""
from __future__ import annotations

import errno
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    """The umask, from /proc on Linux: elsewhere reading it sets it for an instant (a thread's new file: 0o666)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write the whole file to; on success it replaces ``path``.

    For writers that take a path (``torch.save``, ``safetensors.torch.save_file``, ``zipfile``): whatever they
    create gets the umask's mode and is renamed onto ``path`` only when the block ends without an exception.
    "No space left on device" and other write errors are re-raised naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:  # on disk before the rename makes it the file
            os.fsync(f.fileno())
        tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None or e.errno == errno.ENOSPC:
            raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]
