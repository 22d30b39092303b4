"""Strict JSON for untrusted text: only values every store can hold and every reader can
read back.

Python's parser accepts more than JSON (``NaN``, ``Infinity``, ``1e999`` as infinity) and
keeps what PostgreSQL cannot store (NUL, lone surrogates such as ``"\\ud800"``, which
also cannot be encoded as UTF-8 for SQLite's readers). One rule for both stacks: such
a value is refused wherever it is, key or value, naming its path, so a request accepted
on SQLite is one that PostgreSQL would accept too, and every accepted value reads back.

Pure: no I/O. The API applies it to every JSON body before FastAPI parses it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from offpeak.errors import UnsafeJson

# Deeper than any legitimate body (a JSON schema, nested metadata) and far below what
# the parsers and the stores' JSON functions manage (SQLite's json(): 1,000 levels).
MAX_DEPTH = 64
# Items of one object or list: the largest list a body may hold (a batch's request ids).
MAX_ITEMS = 1_000_000
# Integers read back exactly by SQLite's JSON functions and by most clients' parsers.
MIN_INT, MAX_INT = -(2**63), 2**64 - 1

Loc = tuple[str | int, ...]
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Constant(str):
    """``NaN``, ``Infinity`` or ``-Infinity`` as parsed, so the walk can name its path."""


# One decoder for every call: `json.loads` with a hook builds a new one each time.
_DECODER = json.JSONDecoder(parse_constant=_Constant)


def loads(data: bytes | str) -> Any:
    """The JSON document in ``data``, or :class:`UnsafeJson` naming the first bad value."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            # Also refuses surrogates encoded as UTF-8 bytes, which json.loads would pass.
            raise UnsafeJson(
                f"the body is not UTF-8 text (byte {exc.start})", code="invalid_utf8"
            ) from None
        # ASCII text without a `\u` escape holds no NUL and no surrogate in any string
        # (a raw control character is not JSON): the walk may skip the text checks.
        texts = not data.isascii() or b"\\u" in data
    else:
        text = data
        texts = True
    if text.startswith("\ufeff"):  # json.loads's own message for a byte-order mark
        raise UnsafeJson(
            "the body is not JSON: Unexpected UTF-8 BOM (decode using utf-8-sig): "
            "line 1 column 1 (char 0)"
        )
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise UnsafeJson(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise UnsafeJson(
            f"the body nests deeper than {MAX_DEPTH} levels", code="json_too_deep"
        ) from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise UnsafeJson(f"a number is out of range: {exc}", code="number_out_of_range") from None
    check(value, texts=texts)
    return value


def check(value: Any, loc: Loc = (), *, texts: bool = True) -> None:
    """Raise :class:`UnsafeJson` for the first value in ``value`` that no store can keep;
    ``texts=False`` when no string can hold a NUL or a surrogate (see :func:`loads`)."""
    if type(value) is not dict and type(value) is not list:
        _check_scalar(value, loc)
        return
    stack: list[tuple[Any, Loc]] = [(value, loc)]
    while stack:
        node, path = stack.pop()
        if len(path) - len(loc) >= MAX_DEPTH:
            raise UnsafeJson(
                f"{_where(path)} nests deeper than {MAX_DEPTH} levels", path, code="json_too_deep"
            )
        if len(node) > MAX_ITEMS:
            raise UnsafeJson(
                f"{_where(path)} has {len(node)} items, more than {MAX_ITEMS}",
                path,
                code="json_too_many_items",
            )
        # The hot loop of every request: paths are built only for containers and errors.
        items = node.items() if type(node) is dict else enumerate(node)
        for key, item in items:
            if texts and type(key) is str and not _clean(key):
                _check_text(key, (*path, key), "key")
            kind = type(item)
            if kind is str:
                if texts and not _clean(item):
                    _check_text(item, (*path, key), "text")
            elif kind is dict or kind is list:
                stack.append((item, (*path, key)))
            elif kind is int:
                if not MIN_INT <= item <= MAX_INT:
                    _check_scalar(item, (*path, key))
            elif kind is not bool and item is not None:
                _check_scalar(item, (*path, key))


def _clean(text: str) -> bool:
    return "\x00" not in text and (text.isascii() or not _SURROGATE.search(text))


def _check_scalar(value: Any, loc: Loc) -> None:
    kind = type(value)
    if kind is str:
        _check_text(value, loc, "text")
    elif kind is _Constant:
        raise UnsafeJson(
            f"{_where(loc)}: {value} is not a JSON number; send a finite number or null",
            loc,
            code="non_finite_number",
        )
    elif kind is float and math.isnan(value):  # from parsers that let NaN through
        raise UnsafeJson(
            f"{_where(loc)}: NaN is not a JSON number; send a finite number or null",
            loc,
            code="non_finite_number",
        )
    elif kind is float and math.isinf(value):  # 1e999, or Infinity from such parsers
        raise UnsafeJson(
            f"{_where(loc)}: the number is infinite or beyond the double-precision range",
            loc,
            code="number_out_of_range",
        )
    elif kind is int and not MIN_INT <= value <= MAX_INT:
        raise UnsafeJson(
            f"{_where(loc)}: the integer does not fit in 64 bits; send it as a string",
            loc,
            code="number_out_of_range",
        )


def _check_text(text: str, loc: Loc, what: str) -> None:
    if what == "key":
        # The path names the bad key itself: escaped, so the error can be sent as UTF-8.
        loc = (*loc[:-1], _escaped(text))
    if "\x00" in text:
        raise UnsafeJson(
            f"{_where(loc)}: the {what} holds a NUL character (\\u0000)",
            loc,
            code="nul_character",
        )
    if not text.isascii() and _SURROGATE.search(text):
        raise UnsafeJson(
            f"{_where(loc)}: the {what} holds a lone surrogate (\\ud800-\\udfff without "
            "its pair), which is not Unicode text",
            loc,
            code="lone_surrogate",
        )


def _escaped(text: str) -> str:
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode()


def _where(loc: Loc) -> str:
    return dotted(loc) or "the body"


def dotted(loc: Loc) -> str:
    """A path as ``a.b[0].c``, the form error messages and OpenAI's ``param`` use."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
