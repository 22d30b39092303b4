"""infra/observability: the alerting rules pass their promtool tests, and the rules and
the dashboard speak only of the metrics the README documents, in valid PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.utils.metrics import documented

OBSERVABILITY = Path(__file__).parents[2] / "infra" / "observability"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
ALERTS = OBSERVABILITY / "alerts.yml"
PROMTOOL = shutil.which("promtool") or "promtool"  # `make test` installs it (Debian prometheus)
# The suffixes Prometheus adds to a histogram's series.
_SERIES = re.compile(r"\b(offpeak_\w+?)(?:_bucket|_count|_sum)?\b(?!\w)")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, check=False)


def alert_exprs() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    return {rule["alert"]: rule["expr"] for rule in rules}


def dashboard_exprs() -> dict[str, str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {f"{p['title']} {t['refId']}": t["expr"] for p in panels for t in p["targets"]}


def metric_names(expr: str) -> set[str]:
    return set(_SERIES.findall(expr))


def test_alerting_rules_pass_their_promtool_tests() -> None:
    checked = promtool("check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", OBSERVABILITY / "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_test_that_fires_it() -> None:
    tests = yaml.safe_load((OBSERVABILITY / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == set(alert_exprs())
    assert {"OffpeakDeadlineAtRisk", "OffpeakJobsFailingRepeatedly", "OffpeakSealingLagging",
            "OffpeakSchedulerStalled"} <= fired  # fmt: skip


def test_rules_and_dashboard_use_documented_metrics_only() -> None:
    docs = set(documented())
    for where, expr in {**alert_exprs(), **dashboard_exprs()}.items():
        names = metric_names(expr)
        assert names, where
        assert names <= docs, (where, names - docs)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool checks PromQL as it checks rules: each query as a recording rule.
    rules = [
        {"record": f"offpeak:dashboard_query_{i}", "expr": expr}
        for i, expr in enumerate(dashboard_exprs().values())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_shows_what_an_operator_asks_for() -> None:
    titles = " / ".join(p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]).lower()
    for topic in ["queue by model", "deadline slack", "jobs per pool", "throughput",
                  "carbon saved", "error rate"]:  # fmt: skip
        assert topic in titles, topic
