"""The metrics the README documents, for the tests that hold code and infra to them."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from offpeak.state.metrics import StateMetrics

README = Path(__file__).parents[2] / "README.md"
_ROW = re.compile(r"^\| `(offpeak_\w+)` \| (\w+) \|([^|]*)\|", re.M)


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    """README's metrics table: name -> (type, labels)."""
    return {
        name: (kind, frozenset(re.findall(r"`(\w+)`", labels)))
        for name, kind, labels in _ROW.findall(README.read_text())
    }


def parse(text: str) -> dict[str, Any]:
    """Exposed families by their exposed name (counters with `_total`)."""
    return {
        f"{f.name}_total" if f.type == "counter" else f.name: f
        for f in text_string_to_metric_families(text)
    }


def samples(family: Any, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    """A family's samples (of ``suffix``: `_total`, `_count`...) by sorted label pairs."""
    wanted = family.name + suffix
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if isinstance(s, Sample) and s.name == wanted
    }


def value(families: dict[str, Any], name: str, suffix: str = "", **labels: str) -> float:
    """One sample's value; 0 when absent."""
    if name not in families:
        return 0.0
    return samples(families[name], suffix).get(tuple(sorted(labels.items())), 0.0)


def _nonzero(family: Any, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    return {k: v for k, v in samples(family, suffix).items() if v}


def state_mismatches(families: dict[str, Any], state: StateMetrics) -> list[str]:
    """Where the scraped state families differ from ``state`` (empty when they agree)."""
    expected: dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]] = {
        "offpeak_requests": ("", {
            (("model", m), ("status", s)): n for (s, m), n in state.requests.items()
        }),
        "offpeak_pending_tokens": ("", {
            (("model", m),): n for m, n in state.pending_tokens.items() if n
        }),
        "offpeak_jobs": ("", {(("pool", p), ("status", s)): n for (s, p), n in state.jobs.items()}),
        "offpeak_batches": ("", {(("status", s),): n for s, n in state.batches.items()}),
        "offpeak_credits_spent_usd_total": ("_total", {(): state.credits_spent_usd}),
        "offpeak_carbon_emitted_grams_total": ("_total", {(): state.carbon_emitted_grams}),
        "offpeak_carbon_saved_grams_total": ("_total", {(): state.carbon_saved_grams}),
    }  # fmt: skip
    per_job = {
        "offpeak_job_runs_total": lambda t: t.jobs,
        "offpeak_job_completion_tokens_total": lambda t: t.completion_tokens,
        "offpeak_job_wall_seconds_total": lambda t: t.wall_seconds,
        "offpeak_job_energy_joules_total": lambda t: t.energy_kwh * 3.6e6,
    }
    for name, of in per_job.items():
        expected[name] = ("_total", {
            (("model", m), ("pool", p)): of(t) for (m, p), t in state.job_totals.items()
        })  # fmt: skip
    wrong = []
    for name, (suffix, want) in expected.items():
        got = _nonzero(families[name], suffix) if name in families else {}
        want = {k: v for k, v in want.items() if v}
        if got.keys() != want.keys() or any(
            not math.isclose(got[k], want[k], rel_tol=1e-9, abs_tol=1e-9) for k in want
        ):
            wrong.append(f"{name}: served {got}, database {want}")
    return wrong
