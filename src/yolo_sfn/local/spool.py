"""moto's S3 object bodies without one open file per object.

moto 5.2.5 keeps every object body in a ``tempfile.SpooledTemporaryFile``: past its buffer size
the body moves to an anonymous temporary file that stays open as long as the object exists, so a
run holds one descriptor per large object (every input image, every intermediate) and a few
hundred images hit ``ulimit -n``. ``PathSpool`` is the same file-like surface moto uses (seek,
read, write, truncate, close) with a small body in memory and a large one in a named file under
one folder, opened only for the duration of each read or write: open descriptors stay bounded
whatever the number of objects, and memory does not grow with the bodies either.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import types
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

S3_MODELS = "moto.s3.models"
MEMORY_LIMIT = 64 * 1024  # bodies up to this size stay in memory


class PathSpool:
    """A spooled buffer whose overflow file is closed between calls."""

    def __init__(self, folder: str, max_size: int = MEMORY_LIMIT) -> None:
        self._folder = folder
        self._max = max_size
        self._memory = bytearray()
        self._path: str | None = None
        self._pos = 0
        self.closed = False

    def _spill(self) -> None:
        fd, self._path = tempfile.mkstemp(dir=self._folder, prefix="s3-")
        with os.fdopen(fd, "wb") as f:
            f.write(self._memory)
        self._memory = bytearray()

    def write(self, data: bytes) -> int:
        if self._path is None and self._pos + len(data) > self._max:
            self._spill()
        if self._path is None:
            self._memory[self._pos:self._pos + len(data)] = data
        else:
            with open(self._path, "r+b") as f:
                f.seek(self._pos)
                f.write(data)
        self._pos += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if self._path is None:
            end = len(self._memory) if size is None or size < 0 else self._pos + size
            out = bytes(self._memory[self._pos:end])
        else:
            with open(self._path, "rb") as f:
                f.seek(self._pos)
                out = f.read(-1 if size is None else size)
        self._pos += len(out)
        return out

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = pos
        elif whence == 1:
            self._pos += pos
        else:
            self._pos = self._size() + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _size(self) -> int:
        return len(self._memory) if self._path is None else os.path.getsize(self._path)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self._path is None:
            del self._memory[size:]
        else:
            os.truncate(self._path, size)
        return size

    def close(self) -> None:
        if self._path is not None:
            with suppress(OSError):
                os.unlink(self._path)
            self._path = None
        self._memory = bytearray()
        self.closed = True

    def __enter__(self) -> PathSpool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextmanager
def path_spooled_s3() -> Iterator[str]:
    """moto's S3 bodies as ``PathSpool`` under a private folder (removed at exit); yields it."""
    import importlib

    models = importlib.import_module(S3_MODELS)
    folder = tempfile.mkdtemp(prefix="yolo-sfn-s3-")

    def spooled(*args: Any, **kwargs: Any) -> PathSpool:
        return PathSpool(folder, MEMORY_LIMIT)

    original = models.tempfile
    shim = types.SimpleNamespace(**{k: getattr(original, k) for k in dir(original)
                                    if not k.startswith("__")})
    shim.SpooledTemporaryFile = spooled
    # private hook: FakeKey makes its body buffer with moto.s3.models.tempfile.SpooledTemporaryFile
    models.tempfile = shim
    try:
        yield folder
    finally:
        models.tempfile = original
        shutil.rmtree(folder, ignore_errors=True)
