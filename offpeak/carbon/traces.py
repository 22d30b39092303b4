"""Hourly carbon-intensity traces in the Electricity Maps CSV format (both header
spellings), plain or gzip-compressed, and the seven traces shipped with offpeak."""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from offpeak.errors import ConfigError

SHIPPED = Path(__file__).parent / "traces"
# Column names differ between the dataset's two editions (note the U+2082 subscript).
_ZONE_COLUMNS = ("Zone Id", "Zone id")
_LIFECYCLE_COLUMNS = (
    "Carbon Intensity gCO₂eq/kWh (LCA)",
    "Carbon intensity gCO₂eq/kWh (Life cycle)",
)
_TIME_COLUMN = "Datetime (UTC)"


@dataclass(frozen=True)
class Trace:
    """One zone's hourly life-cycle intensity (gCO2eq/kWh), starting at ``start``."""

    zone: str
    start: datetime
    intensity: np.ndarray  # float64, one value per hour, no gaps

    @property
    def hours(self) -> int:
        return len(self.intensity)

    def index_of(self, at: datetime) -> int:
        """The trace's hour for ``at``, by hour of year (the trace starts on Jan 1);
        the extra day of a leap year wraps around to the trace's first hours."""
        new_year = datetime(at.year, 1, 1, tzinfo=at.tzinfo or UTC)
        hour_of_year = int((at.replace(tzinfo=at.tzinfo or UTC) - new_year).total_seconds() // 3600)
        return hour_of_year % self.hours


def _pick(header: list[str], names: tuple[str, ...], path: Path) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise ConfigError(f"{path}: no column among {', '.join(names)}")


def load_trace(path: Path) -> Trace:
    """Read an hourly Electricity Maps CSV (``.csv`` or ``.csv.gz``)."""
    try:
        raw = path.read_bytes()
        text = gzip.decompress(raw) if path.suffix == ".gz" else raw
        rows = list(csv.reader(io.StringIO(text.decode("utf-8-sig"))))
    except (OSError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise ConfigError(f"cannot read trace {path}: {exc}") from exc
    if len(rows) < 2:
        raise ConfigError(f"{path}: no data rows")
    header, data = rows[0], [r for r in rows[1:] if r]
    zone = data[0][_pick(header, _ZONE_COLUMNS, path)]
    when = header.index(_TIME_COLUMN) if _TIME_COLUMN in header else 0
    value = _pick(header, _LIFECYCLE_COLUMNS, path)
    try:
        start = datetime.strptime(data[0][when], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        intensity = np.array([float(r[value]) for r in data], dtype=np.float64)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return Trace(zone, start, intensity)


def shipped_traces() -> dict[str, Path]:
    """Zone id -> path of each trace shipped inside the package."""
    return {load_trace(p).zone: p for p in sorted(SHIPPED.glob("*.csv.gz"))}
