"""The object-storage interface every backend implements."""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, cast

from offpeak.errors import InvalidInput


def check_key(key: str) -> str:
    """Refuse keys that could escape the store's root or are not plain relative paths."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidInput(f"invalid object key {key!r}")
    return key


class ObjectStore(ABC):
    """Objects addressed by slash-separated keys under one root URL."""

    url: str

    def uri(self, key: str) -> str:
        """The full URL of ``key`` (``s3://bucket/prefix/key`` or ``file:///...``)."""
        return f"{self.url.rstrip('/')}/{check_key(key)}"

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key``, replacing any object there, atomically."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` only if nothing is there, else :class:`ObjectExists`."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file; large files go up in parts."""

    @abstractmethod
    def put_stream(self, key: str, stream: BinaryIO) -> None:
        """Upload from an open binary stream without holding it in memory."""

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """A file to write the object into: stored at ``key`` (as :meth:`put_file`
        would) when the block ends without an error, not at all otherwise."""
        with tempfile.NamedTemporaryFile("wb", prefix="offpeak-") as out:
            yield cast(BinaryIO, out)
            out.flush()
            self.put_file(key, Path(out.name))

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The whole object, or :class:`ObjectNotFound`."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object; the caller closes it."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix``, in lexical order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error."""

    def check(self) -> None:
        """Raise :class:`StorageError` unless the store answers (readiness probes)."""
        self.exists(".offpeak-readiness-probe")

    @abstractmethod
    def presigned_url(self, key: str, expires_in: int = 3600) -> str:
        """A URL anyone holding it can GET the object from, for ``expires_in`` seconds."""
