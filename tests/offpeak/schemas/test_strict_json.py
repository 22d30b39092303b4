"""The strict JSON parser: what it refuses (with the path and code), and what it keeps."""

from __future__ import annotations

import json
from typing import Any

import pytest

from offpeak.errors import UnsafeJson
from offpeak.schemas import strict_json
from offpeak.schemas.strict_json import MAX_DEPTH, dotted, loads


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("text", "code", "loc"),
    [
        (b'{"m": {"x": NaN}}', "non_finite_number", ("m", "x")),
        (b'{"m": [1, Infinity]}', "non_finite_number", ("m", 1)),
        (b'{"m": -Infinity}', "non_finite_number", ("m",)),
        (b'{"m": 1e999}', "number_out_of_range", ("m",)),
        (b'{"m": -1e999}', "number_out_of_range", ("m",)),
        (b'{"m": 18446744073709551616}', "number_out_of_range", ("m",)),
        (b'{"m": -9223372036854775809}', "number_out_of_range", ("m",)),
        (b'{"m": ' + b"9" * 5000 + b"}", "number_out_of_range", ()),
        (b'{"c": "a\\ud800b"}', "lone_surrogate", ("c",)),
        (b'{"c": "\\udfff"}', "lone_surrogate", ("c",)),
        (b'{"c": ["ok", "\\ude00\\ud83d"]}', "lone_surrogate", ("c", 1)),
        (b'{"c": "a\\u0000"}', "nul_character", ("c",)),
        (b'{"k": {"\\ud800": 1}}', "lone_surrogate", ("k", "\\ud800")),
        (b'{"k": {"a\\u0000": 1}}', "nul_character", ("k", "a\\u0000")),
        (b'"\xed\xa0\x80"', "invalid_utf8", ()),  # a surrogate encoded as UTF-8 bytes
        (b'{"x": "\xff"}', "invalid_utf8", ()),
        (b"[" * 5000 + b"]" * 5000, "json_too_deep", ()),
        (b'{"request_body": ', "json_invalid", ()),
        (b'{"c": "a\x00"}', "json_invalid", ()),  # a raw NUL: not JSON, whatever the walk skips
        (b'{"c": "\xc3\xa9\\uD800"}', "lone_surrogate", ("c",)),  # upper-case hex, non-ASCII body
        (b'{"c": "\\\\\\u0000"}', "nul_character", ("c",)),  # an escaped backslash, then \u0000
        ("\ufeff{}".encode(), "json_invalid", ()),
    ],
)
def test_refused_with_its_path_and_code(text: bytes, code: str, loc: tuple[Any, ...]) -> None:
    with pytest.raises(UnsafeJson) as refused:
        loads(text)
    assert refused.value.code == code
    assert refused.value.loc == loc
    # The message can always be sent back as UTF-8 JSON.
    json.dumps(refused.value.message, ensure_ascii=False).encode()
    json.dumps(list(refused.value.loc), ensure_ascii=False).encode()


def test_nesting_is_limited_to_max_depth() -> None:
    loads(json.dumps(_nested(MAX_DEPTH)))  # MAX_DEPTH objects, one in another
    with pytest.raises(UnsafeJson) as refused:
        loads(json.dumps(_nested(MAX_DEPTH + 1)))
    assert refused.value.code == "json_too_deep"
    assert dotted(refused.value.loc) == ".".join(["a"] * MAX_DEPTH)


def test_items_are_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strict_json, "MAX_ITEMS", 3)
    loads(b'{"x": [1, 2, 3]}')
    with pytest.raises(UnsafeJson) as refused:
        loads(b'{"x": [1, 2, 3, 4]}')
    assert (refused.value.code, refused.value.loc) == ("json_too_many_items", ("x",))


AWKWARD = {
    "unicode": "Grüße, 東京, مرحبا, \u2028 line\u2029 separators, \u200b zero width",
    "emoji": "\U0001f600\U0001f469\u200d\U0001f4bb",
    "quotes": 'a "quoted" \\ back\\slash \n\t\r',
    "": "an empty key",
    "big": [2**63 - 1, -(2**63), 2**64 - 1, 1.7976931348623157e308, 5e-324, -0.0],
    "deep": _nested(40),
    "nothing": [None, True, False, {}, []],
}


def test_awkward_but_legitimate_values_are_kept_exactly() -> None:
    assert loads(json.dumps(AWKWARD).encode()) == AWKWARD
    assert loads(json.dumps(AWKWARD, ensure_ascii=False).encode()) == AWKWARD


def test_big_bodies_stay_accepted() -> None:
    # 10k messages, 1 MB of metadata, a 100k-key object: fine today, kept so (issue 16).
    messages = [{"role": "user", "content": f"message {i}"} for i in range(10_000)]
    body = {
        "request_body": {"model": "m", "messages": messages},
        "metadata": {"blob": "x" * 1_000_000, "keys": {f"k{i}": i for i in range(100_000)}},
    }
    assert loads(json.dumps(body).encode()) == body


@pytest.mark.parametrize(
    ("value", "code"),
    [(float("nan"), "non_finite_number"), (float("inf"), "number_out_of_range")],
)
def test_check_refuses_what_other_parsers_let_through(value: float, code: str) -> None:
    # pydantic's JSON parser (OpenAI batch input lines) reads NaN and 1e999 as floats.
    with pytest.raises(UnsafeJson) as refused:
        strict_json.check({"body": {"x": [value]}})
    assert (refused.value.code, refused.value.loc) == (code, ("body", "x", 0))


def test_dotted_paths() -> None:
    assert dotted(("request_body", "messages", 0, "content")) == "request_body.messages[0].content"
    assert dotted((2, "a")) == "[2].a"
    assert dotted(()) == ""
