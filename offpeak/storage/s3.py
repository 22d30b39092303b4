"""Object storage on S3 or any S3-compatible server, through boto3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from offpeak.errors import ObjectExists, ObjectNotFound, StorageError
from offpeak.storage.base import ObjectStore, check_key

# Multipart above 16 MiB, in 16 MiB parts, 4 at a time.
TRANSFER = TransferConfig(
    multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=4
)
_MISSING = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix``."""

    def __init__(
        self, url: str, *, endpoint_url: str | None = None, region: str | None = None
    ) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            # A connection opens within a few seconds or not at all: with botocore's 60 s,
            # a SYN lost while the link was down waits out TCP's backoff after it heals
            # (seen as 16 s of no progress in the distributed S3-cut scenario).
            config=Config(
                retries={"max_attempts": 5, "mode": "adaptive"},
                max_pool_connections=32,
                connect_timeout=5,
            ),
        )
        # Readiness probes answer within seconds, rather than after five retries.
        self._probe: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5),
        )

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _strip(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (development and test servers)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) not in _MISSING | {"NoSuchBucket"}:
                raise StorageError(f"cannot reach bucket {self.bucket}: {exc}") from exc
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except (ClientError, BotoCoreError) as exc:
                raise StorageError(f"cannot create bucket {self.bucket}: {exc}") from exc
        except BotoCoreError as exc:  # unreachable: connection refused, timeouts
            raise StorageError(f"cannot reach bucket {self.bucket}: {exc}") from exc

    def check(self) -> None:
        """Raise :class:`StorageError` unless the bucket answers, within seconds (one
        attempt, short timeouts); a missing bucket is created, as at start-up."""
        try:
            self._probe.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) not in _MISSING | {"NoSuchBucket"}:
                raise StorageError(f"cannot reach bucket {self.bucket}: {exc}") from exc
            self.ensure_bucket()
        except BotoCoreError as exc:
            raise StorageError(f"cannot reach bucket {self.bucket}: {exc}") from exc

    def put(self, key: str, data: bytes) -> None:
        self._call(
            "put", key, lambda k: self.client.put_object(Bucket=self.bucket, Key=k, Body=data)
        )

    def create(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
            )
        except ClientError as exc:
            if _code(exc) in _PRECONDITION:
                raise ObjectExists(f"object {key} already exists") from None
            raise StorageError(f"cannot create {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot create {key}: {exc}") from exc

    def put_file(self, key: str, path: Path) -> None:
        self._call(
            "upload",
            key,
            lambda k: self.client.upload_file(str(path), self.bucket, k, Config=TRANSFER),
        )

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        self._call(
            "upload",
            key,
            lambda k: self.client.upload_fileobj(stream, self.bucket, k, Config=TRANSFER),
        )

    def get(self, key: str) -> bytes:
        with self.open(key) as body:
            return body.read()

    def open(self, key: str) -> BinaryIO:
        response = self._call(
            "get", key, lambda k: self.client.get_object(Bucket=self.bucket, Key=k)
        )
        return cast(BinaryIO, response["Body"])

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise StorageError(f"cannot read {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield self._strip(item["Key"])
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"cannot list {prefix!r}: {exc}") from exc

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda k: self.client.delete_object(Bucket=self.bucket, Key=k))

    def presigned_url(self, key: str, expires_in: int = 3600) -> str:
        return cast(
            str,
            self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(key)},
                ExpiresIn=expires_in,
            ),
        )

    def _call(self, verb: str, key: str, action: Any) -> Any:
        try:
            return action(self._key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise ObjectNotFound(f"object {key} not found") from None
            raise StorageError(f"cannot {verb} {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot {verb} {key}: {exc}") from exc
