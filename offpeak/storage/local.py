"""Object storage in a local folder: the embedded default. Writes are atomic renames."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from offpeak.errors import ObjectExists, ObjectNotFound, StorageError
from offpeak.storage.base import ObjectStore, check_key

TMP_PREFIX = ".tmp-"


class LocalStore(ObjectStore):
    """Objects as files under ``root``; keys are relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def check(self) -> None:
        if not self.root.is_dir():
            raise StorageError(f"the object store folder {self.root} is missing")

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write_temp(self, key: str, write: object) -> Path:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)  # type: ignore[operator]
        except BaseException:
            os.unlink(tmp)
            raise
        return Path(tmp)

    def put(self, key: str, data: bytes) -> None:
        with self.writer(key) as out:
            out.write(data)

    def create(self, key: str, data: bytes) -> None:
        tmp = self._write_temp(key, lambda out: out.write(data))
        try:
            # link() fails if the target exists: an atomic create-if-absent.
            os.link(tmp, self._path(key))
        except FileExistsError:
            raise ObjectExists(f"object {key} already exists") from None
        finally:
            os.unlink(tmp)

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as source:
            self.put_stream(key, source)

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        with self.writer(key) as out:
            shutil.copyfileobj(stream, out, 1 << 20)

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        # Written beside its key, it becomes the object by a rename: whole at once, and
        # never copied.
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def get(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"object {key} not found") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        keys = (
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*")
            if path.is_file() and not path.name.startswith(TMP_PREFIX)
        )
        yield from sorted(k for k in keys if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def presigned_url(self, key: str, expires_in: int = 3600) -> str:
        # A local file needs no signature: whoever can read the folder can read it.
        if not self.exists(key):
            raise ObjectNotFound(f"object {key} not found")
        return self.uri(key)
