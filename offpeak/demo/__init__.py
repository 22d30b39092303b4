"""`make demo`: the whole pipeline on a fresh clone, and its display (a tool, not the library)."""
