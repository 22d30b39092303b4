"""Bounds checked on a dataset's bytes before an Arrow reader parses them.

pyarrow's JSON reader recurses once per level of nesting: a line whose arrays nest
some ten thousand deep overflows the thread's stack and the whole process dies with
SIGSEGV, which no ``except`` can catch. A compressed file may also expand far past its
own size. So a CSV or JSONL file is first read through :func:`check_stream`, in the
caller's thread and a slice at a time: it counts the decompressed bytes and, for JSON
lines, measures how deep values nest, raising past a bound. Only then may Arrow read
the file, from its own native stream (a Python stream handed to Arrow would be read
from Arrow's threads, which may still be calling into Python after an error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from offpeak.errors import DatasetError, DatasetTooLarge

# The bound on request bodies too: deeper than any legitimate cell (a conversation
# with content parts is 4 levels) and thousands of levels below where pyarrow crashes.
MAX_JSON_DEPTH = 64
SCAN_BYTES = 1 << 20

_QUOTE, _BACKSLASH, _NEWLINE = ord('"'), ord("\\"), ord("\n")
# ``byte | 32`` maps `[` onto `{` and `]` onto `}` (and no other byte onto either).
_OPENING, _CLOSING = ord("{"), ord("}")


class JsonDepth:
    """The nesting depth of a stream of JSON lines, fed block by block (vectorised).

    Never an under-estimate of what a parser starting at any line reaches: the depth is
    carried across lines (a parser reads on past a newline outside strings) and never
    drops below zero, escapes are honoured inside and outside strings alike, and a
    string still open at the end of a line (which a parser refuses too) is refused.
    """

    def __init__(self, limit: int = MAX_JSON_DEPTH) -> None:
        self.limit = limit
        self.depth = 0
        self.line = 0  # lines ended before the current block
        self._in_string = False
        self._escape_next = False  # the block before ended in an odd run of backslashes

    def feed(self, block: bytes) -> None:
        """Account for ``block``; raise :class:`DatasetError` naming the line (from 0)
        where the depth first passes the limit (``json_too_deep``) or a string is left
        open (``dataset_unreadable``)."""
        data = np.frombuffer(block, dtype=np.uint8)
        folded = data | 32
        special = (data == _QUOTE) | (data == _NEWLINE) | (folded == _OPENING)
        special |= folded == _CLOSING
        escapes = self._escape_next
        if escapes or b"\\" in block:
            slash = data == _BACKSLASH
            special |= slash
            # A backslash matters only before a byte that counts here (`\\n`, `\\u` do not).
            escapes = escapes or bool(slash[-1]) or bool(np.any(slash[:-1] & special[1:]))
            if not escapes:
                special &= ~slash
        positions = np.flatnonzero(special)
        codes = data[positions]
        if escapes:
            positions, codes = self._unescaped(positions, codes, len(data))
        if not len(codes):
            return
        quote = codes == _QUOTE
        newline = codes == _NEWLINE
        inside = (np.cumsum(quote) + self._in_string) & 1  # after each byte
        if np.any(inside[newline]):
            line = self.line + int(np.count_nonzero(newline[: np.argmax(newline & (inside > 0))]))
            raise DatasetError(
                f"line {line}: a string is still open at the end of the line",
                code="dataset_unreadable",
            )
        outside = inside == 0  # a bracket is no quote, so "after" is "at" for it
        kind = codes | 32
        steps = (outside & (kind == _OPENING)).astype(np.int64)
        steps -= outside & (kind == _CLOSING)
        walk = self.depth + np.cumsum(steps)
        # The walk held at zero: the running sum minus its lowest point below zero.
        depth = walk if walk.min() >= 0 else walk - np.minimum(0, np.minimum.accumulate(walk))
        if int(depth.max()) > self.limit:
            first = int(np.argmax(depth > self.limit))
            line = self.line + int(np.count_nonzero(newline[:first]))
            raise DatasetError(
                f"line {line}: a value nests deeper than {self.limit} levels",
                code="json_too_deep",
            )
        self.depth = int(depth[-1])
        self._in_string = bool(inside[-1])
        self.line += int(np.count_nonzero(newline))

    def _unescaped(
        self, positions: np.ndarray, codes: np.ndarray, size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The special bytes left once backslashes and the bytes they escape are dropped."""
        slashes = positions[codes == _BACKSLASH]
        escaped: list[np.ndarray] = []
        carried = self._escape_next
        self._escape_next = False
        if len(slashes):
            breaks = np.flatnonzero(np.diff(slashes) != 1) + 1
            starts = np.concatenate(([0], breaks))
            ends = np.concatenate((breaks, [len(slashes)]))
            lengths = ends - starts
            if carried and slashes[0] == 0:
                lengths[0] += 1  # the run began in the block before
                carried = False
            after = slashes[ends - 1] + 1
            odd = after[(lengths & 1).astype(bool)]
            if len(odd) and odd[-1] == size:
                self._escape_next = True
                odd = odd[:-1]
            escaped.append(odd)
        if carried:
            escaped.append(np.zeros(1, dtype=np.int64))
        keep = codes != _BACKSLASH
        if escaped:
            dropped = np.zeros(size + 1, dtype=bool)
            for where in escaped:
                dropped[where] = True
            # A newline ends the line whatever precedes it: Arrow splits blocks there.
            keep &= ~dropped[positions] | (codes == _NEWLINE)
        return positions[keep], codes[keep]


@dataclass(frozen=True)
class Scanned:
    """What reading a text dataset through found: its size and its longest line."""

    size: int
    longest_line: int

    def block_bytes(self, largest: int, smallest: int = 1 << 20) -> int:
        """The block size to parse it with: Arrow reads some 32 blocks ahead of its
        consumer, so blocks are small, yet a row must fit in one (else "straddling
        object"); room for twice the longest line, as a power of two, within bounds."""
        wanted = 1 << max(0, 2 * self.longest_line - 1).bit_length()
        return min(max(wanted, smallest), largest)


def check_stream(stream: Any, max_bytes: int | None, json_lines: bool) -> Scanned:
    """Read ``stream`` (a binary stream, decompressing) to its end a slice at a time:
    raise :class:`DatasetTooLarge` past ``max_bytes``, and for JSON lines
    :class:`DatasetError` past the nesting bound."""
    depth = JsonDepth() if json_lines else None
    seen = longest = line = 0  # line: bytes of the line still open
    while block := stream.read(SCAN_BYTES):
        block = bytes(block)
        seen += len(block)
        if max_bytes is not None and seen > max_bytes:
            raise DatasetTooLarge(
                f"the dataset expands past the {max_bytes}-byte limit (counted after decompression)"
            )
        if depth is not None:
            depth.feed(block)
        ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == _NEWLINE)
        if not len(ends):
            line += len(block)
            continue
        longest = max(longest, line + int(ends[0]) + 1)
        if len(ends) > 1:
            longest = max(longest, int(np.diff(ends).max()))
        line = len(block) - int(ends[-1]) - 1
    return Scanned(seen, max(longest, line))
