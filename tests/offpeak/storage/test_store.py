import hashlib
import io
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
import pytest

from offpeak.config import load_settings
from offpeak.errors import InvalidInput, ObjectExists, ObjectNotFound, StorageError
from offpeak.storage import LocalStore, ObjectStore, S3Store, open_store
from tests.conftest import new_s3_url

BIG = 20 << 20  # above S3Store's 16 MiB multipart threshold


def test_put_then_get_round_trips(store: ObjectStore) -> None:
    store.put("a/b/c.bin", b"\x00\x01payload")
    assert store.get("a/b/c.bin") == b"\x00\x01payload"


def test_put_replaces_an_existing_object(store: ObjectStore) -> None:
    store.put("k.txt", b"old")
    store.put("k.txt", b"new")
    assert store.get("k.txt") == b"new"


def test_open_streams_the_object(store: ObjectStore) -> None:
    store.put("stream.txt", b"line 1\nline 2\n")
    with store.open("stream.txt") as stream:
        assert stream.read(7) == b"line 1\n"
        assert stream.read() == b"line 2\n"


def test_exists_tells_present_from_absent(store: ObjectStore) -> None:
    store.put("here.txt", b"x")
    assert store.exists("here.txt")
    assert not store.exists("absent.txt")
    assert not store.exists("here.txt/below")


def test_list_by_prefix_in_lexical_order(store: ObjectStore) -> None:
    for key in ["b/2", "a/10", "a/2", "a/1", "ab/x", "a/sub/z"]:
        store.put(key, key.encode())
    assert list(store.list("a/")) == ["a/1", "a/10", "a/2", "a/sub/z"]
    assert list(store.list("a")) == ["a/1", "a/10", "a/2", "a/sub/z", "ab/x"]
    assert list(store.list()) == ["a/1", "a/10", "a/2", "a/sub/z", "ab/x", "b/2"]
    assert list(store.list("nothing/")) == []


def test_delete_removes_the_object(store: ObjectStore) -> None:
    store.put("gone.txt", b"x")
    store.delete("gone.txt")
    assert not store.exists("gone.txt")
    with pytest.raises(ObjectNotFound):
        store.get("gone.txt")


def test_delete_of_a_missing_object_is_fine(store: ObjectStore) -> None:
    store.delete("never/was.txt")


def test_create_twice_raises_object_exists_and_keeps_the_first(store: ObjectStore) -> None:
    store.create("once.txt", b"first")
    with pytest.raises(ObjectExists) as caught:
        store.create("once.txt", b"second")
    assert caught.value.code == "object_exists"
    assert isinstance(caught.value, FileExistsError)
    assert store.get("once.txt") == b"first"


def test_get_of_a_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        store.get("missing.txt")
    assert isinstance(caught.value, FileNotFoundError)
    assert isinstance(caught.value, StorageError)
    with pytest.raises(ObjectNotFound):
        store.open("missing/too.txt")


def test_put_file_of_a_large_file_round_trips(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(BIG)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    store.put_file("uploads/big.bin", path)
    assert hashlib.sha256(store.get("uploads/big.bin")).digest() == hashlib.sha256(data).digest()


def test_put_stream_uploads_from_an_open_stream(store: ObjectStore) -> None:
    data = b"".join(b"%06d\n" % i for i in range(50_000))
    store.put_stream("datasets/lines.txt", io.BytesIO(data))
    assert store.get("datasets/lines.txt") == data


def test_writer_stores_what_was_written_once_the_block_ends(store: ObjectStore) -> None:
    store.put("results/r.jsonl", b"old\n")
    with store.writer("results/r.jsonl") as out:
        for i in range(BIG // 1000):
            out.write(b"%0999d\n" % i)
        assert store.get("results/r.jsonl") == b"old\n"  # replaced only at the end
    data = store.get("results/r.jsonl")
    assert len(data) == BIG // 1000 * 1000 and data.startswith(b"0" * 999 + b"\n")
    assert list(store.list()) == ["results/r.jsonl"]  # no temporary file left


def test_writer_stores_nothing_when_the_block_fails(store: ObjectStore) -> None:
    with pytest.raises(RuntimeError, match="half way"), store.writer("results/r.jsonl") as out:
        out.write(b"partial\n")
        raise RuntimeError("half way")
    assert not store.exists("results/r.jsonl")
    assert list(store.list()) == []
    if isinstance(store, LocalStore):  # nor a temporary file (list() skips those)
        assert [p for p in store.root.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs/path", "", "a//b", "./a", "a/.."])
def test_keys_that_could_escape_the_root_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidInput, match="invalid object key"):
        store.put(key, b"x")
    with pytest.raises(InvalidInput):
        store.get(key)
    with pytest.raises(InvalidInput):
        store.create(key, b"x")


def test_uri_names_the_object_under_the_store_url(store: ObjectStore) -> None:
    assert store.uri("a/b.txt") == f"{store.url}/a/b.txt"


def test_s3_presigned_url_is_fetchable_without_credentials(s3_endpoint: str) -> None:
    store = S3Store(new_s3_url(), endpoint_url=s3_endpoint, region="us-east-1")
    store.ensure_bucket()
    store.put("results/r.jsonl", b'{"ok": true}\n')
    url = store.presigned_url("results/r.jsonl", expires_in=60)
    assert url.startswith(s3_endpoint)
    with httpx.Client() as client:  # no AWS credentials: the signature is in the URL
        response = client.get(url)
    assert response.status_code == 200
    assert response.content == b'{"ok": true}\n'


def test_s3_large_put_file_goes_up_in_parts(s3_endpoint: str, tmp_path: Path) -> None:
    store = S3Store(new_s3_url(), endpoint_url=s3_endpoint, region="us-east-1")
    store.ensure_bucket()
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(BIG))
    store.put_file("big.bin", path)
    head = store.client.head_object(Bucket=store.bucket, Key=f"{store.prefix}/big.bin")
    assert head["ETag"].strip('"').endswith("-2")  # a multipart upload of two parts
    assert head["ContentLength"] == BIG


def test_s3_keys_live_under_the_url_prefix(s3_endpoint: str) -> None:
    url = new_s3_url()
    store = S3Store(url, endpoint_url=s3_endpoint, region="us-east-1")
    store.ensure_bucket()
    store.put("x/y.txt", b"1")
    listed = store.client.list_objects_v2(Bucket=store.bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["data/x/y.txt"]
    assert list(store.list()) == ["x/y.txt"]
    assert store.uri("x/y.txt") == f"{url}/x/y.txt"


def test_local_presigned_url_is_a_file_uri_of_the_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.put("results/r.jsonl", b"{}\n")
    url = store.presigned_url("results/r.jsonl")
    assert url.startswith("file://")
    assert Path(unquote(urlparse(url).path)).read_bytes() == b"{}\n"
    with pytest.raises(ObjectNotFound):
        store.presigned_url("results/missing.jsonl")


def test_local_store_lists_no_temporary_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.put("a.txt", b"1")
    (tmp_path / "objects" / ".tmp-half-written").write_bytes(b"partial")
    assert list(store.list()) == ["a.txt"]


def test_open_store_defaults_to_a_local_folder_under_data_dir(tmp_path: Path) -> None:
    store = open_store(load_settings(data_dir=tmp_path / "data"))
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "data" / "objects").resolve()


def test_open_store_on_s3_creates_the_bucket(s3_endpoint: str) -> None:
    url = new_s3_url()
    store = open_store(load_settings(storage_url=url, s3_endpoint_url=s3_endpoint))
    assert isinstance(store, S3Store)
    store.put("k", b"v")
    assert S3Store(url, endpoint_url=s3_endpoint, region="us-east-1").get("k") == b"v"
