"""The `offpeak` command line: API keys, the API server, database upkeep, and the data
team's commands (submit, status, results, cancel) from offpeak/cli_client.py."""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from offpeak.config import get_settings
from offpeak.errors import OffpeakError
from offpeak.logs import setup_logging
from offpeak.state.db import Database


def _db() -> Database:
    return Database(get_settings().database_url)


def _table(*columns: str) -> Table:
    """A borderless table: a header, then one whitespace-separated line per row, so
    `awk` and `grep` read it as well as people do. ``>name`` right-aligns a column."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        right = column.startswith(">")
        table.add_column(column.lstrip(">"), justify="right" if right else "left", no_wrap=True)
    return table


def _print(table: Table) -> None:
    """Print ``table`` at its natural width: ids are never cut to fit a narrow terminal
    (a long line wraps there as any long line does), and pipes see every character."""

    def console(width: int) -> Console:
        # Cells are data, not markup: a key named "[red]" or ":smile:" prints as written.
        return Console(
            width=width,
            markup=False,
            emoji=False,
            highlight=False,
            force_terminal=sys.stdout.isatty(),
        )

    natural = console(1 << 16).measure(table).maximum
    with (out := console(natural)).capture() as captured:
        out.print(table)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())  # without the padding of the last column


class _CleanErrors(click.Group):
    """Report offpeak errors as one line and a non-zero exit, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except OffpeakError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(1)


@click.group(cls=_CleanErrors)
@click.version_option(package_name="offpeak")
def main() -> None:
    """offpeak: off-peak LLM inference where and when the grid is cleanest."""


def _add_client_commands() -> None:
    from offpeak.client.commands import COMMANDS
    from offpeak.client.webhooks import webhooks

    for command in (*COMMANDS, webhooks):
        main.add_command(command)


_add_client_commands()


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option(
    "--credits",
    "credits_usd",
    type=str,
    default="10",
    show_default=True,
    help="Starting balance in USD.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON object with `key` and `webhook_secret` (shown once).",
)
def keys_create(name: str, credits_usd: str, as_json: bool) -> None:
    """Create a key; the secret is printed once and never stored."""
    from offpeak.clock import now
    from offpeak.events import secrets as webhook_secrets
    from offpeak.state.keys import create_key

    try:
        credits = Decimal(credits_usd)
    except ArithmeticError:
        raise click.BadParameter(
            f"{credits_usd!r} is not an amount", param_hint="--credits"
        ) from None
    db = _db()
    key, secret = create_key(db, name, credits)
    webhook_secret = webhook_secrets.create(db, key.id, now())
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": key.id,
                    "name": key.name,
                    "key": secret,
                    "credits_usd": float(key.credits_usd),
                    "webhook_secret": webhook_secret,
                }
            )
        )
    else:
        click.echo(secret)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def keys_list(as_json: bool) -> None:
    """List keys (never their secrets)."""
    from offpeak.state.keys import list_keys

    table = _table("id", "prefix", ">balance", "state", "name")
    for key in list_keys(_db()):
        if as_json:
            row = {
                "id": key.id,
                "name": key.name,
                "prefix": key.prefix,
                "credits_usd": float(key.credits_usd),
                "created_at": key.created_at,
                "revoked_at": key.revoked_at,
            }
            click.echo(json.dumps(row))
        else:
            state = "revoked" if key.revoked_at else "active"
            table.add_row(key.id, f"{key.prefix}…", f"${key.credits_usd:.2f}", state, key.name)
    if not as_json:
        _print(table)


@keys.command("rotate-webhook-secret")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def keys_rotate_webhook_secret(key_id: str, as_json: bool) -> None:
    """Issue a key a new webhook signing secret (printed once); the old one keeps
    signing beside it for OFFPEAK_WEBHOOK_SECRET_OVERLAP_SECONDS."""
    from offpeak.clock import now
    from offpeak.config import get_settings
    from offpeak.events import secrets as webhook_secrets

    overlap = int(get_settings().webhook_secret_overlap_seconds)
    key, secret = webhook_secrets.rotate(_db(), key_id, now(), overlap)
    if as_json:
        click.echo(json.dumps({"id": key.id, "webhook_secret": secret, "overlap_seconds": overlap}))
    else:
        click.echo(secret)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id or printed prefix."""
    from offpeak.state.keys import revoke_key

    key = revoke_key(_db(), key_id)
    click.echo(f"revoked {key.id} ({key.name})")


@main.command()
@click.option("--host", default=None, help="Interface to listen on [OFFPEAK_API_HOST].")
@click.option("--port", type=int, default=None, help="Port to listen on [OFFPEAK_API_PORT].")
def api(host: str | None, port: int | None) -> None:
    """Run the HTTP API alone."""
    import uvicorn

    settings = get_settings()
    setup_logging(settings.log_format)
    uvicorn.run(
        "api_adapter.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=settings.api_port if port is None else port,
        log_level="info",
        access_log=False,
        log_config=None,  # uvicorn's lines go through setup_logging's handler too
    )


@main.command()
@click.option("--port", type=int, default=None, help="API port [OFFPEAK_API_PORT].")
@click.option(
    "--prefect-port",
    type=int,
    default=4200,
    show_default=True,
    help="Port of the Prefect server started when PREFECT_API_URL is unset.",
)
def serve(port: int | None, prefect_port: int) -> None:
    """Run the whole stack: Prefect server, work pool, deployments, worker, API."""
    # The stack lives with the flows (it drives Prefect); run it as its own process.
    args = [sys.executable, "-m", "flows.serve", "--prefect-port", str(prefect_port)]
    if port is not None:
        args += ["--port", str(port)]
    os.execv(sys.executable, args)


@main.group()
def models() -> None:
    """Served models."""


@models.command("build-tiny")
def models_build_tiny() -> None:
    """Build the tiny chat model (deterministic, no download) if it is not built yet."""
    from offpeak.engine.tiny import ensure_tiny

    path = ensure_tiny(get_settings().models_dir / "tiny-chat")
    click.echo(f"tiny-chat weights at {path}")


@main.group()
def db() -> None:
    """State database upkeep."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the state database to the current schema (run it before the
    first start and after each upgrade of offpeak; `offpeak serve` runs it itself)."""
    from offpeak.state.db import upgrade

    dialect = upgrade(get_settings().database_url)
    click.echo(f"database at the current schema ({dialect})")


@main.command()
def seal() -> None:
    """Seal every accepted request still waiting into Parquet segments."""
    from offpeak.ingest.sealing import seal_all
    from offpeak.storage import open_store

    settings = get_settings()
    results = seal_all(_db(), open_store(settings), settings.seal_rows)
    if results:
        table = _table(">rows", "segment")
        for result in results:
            table.add_row(str(result.rows), str(result.segment))
        _print(table)
    click.echo(f"sealed {sum(r.rows for r in results)} requests into {len(results)} segments")


@main.command()
@click.option(
    "--trace",
    "traces",
    multiple=True,
    metavar="PATH|ZONE",
    help="Electricity Maps hourly CSV (.csv or .csv.gz), or the zone of a shipped 2022 "
    "trace (BR, US-CAL-CISO, DE, US-TEX-ERCO, ES, GB, NO); one pool each, the first is "
    "the default pool. Repeatable. [default: DE]",
)
@click.option(
    "--workload",
    type=click.Choice(["jobs", "stream"]),
    default="jobs",
    show_default=True,
    help="jobs: a year of indivisible GPU jobs; stream: the service's small requests "
    "(--rate), planned by the scheduler's carbon policy.",
)
@click.option("--jobs", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="GPU_S_PER_HOUR",
    help="Stream workload: GPU-seconds of requests arriving per hour (Poisson).",
)
@click.option("--diurnal", is_flag=True, help="Stream workload: the rate follows the day.")
@click.option(
    "--startup-seconds",
    type=click.FloatRange(min=0, max=3600, max_open=True),
    default=30.0,
    show_default=True,
    help="Stream workload: engine start-up per job (energy and GPU time).",
)
@click.option(
    "--days",
    type=click.IntRange(min=2),
    default=None,
    help="Stream workload: replay only the traces' first days. [default: all]",
)
@click.option(
    "--deadline", default="24h", show_default=True, help="Deadline after arrival: 30m, 6h, 3d."
)
@click.option(
    "--forecast",
    default="perfect",
    show_default=True,
    help="What the forecast-driven policies see: perfect, noisy:E (e.g. noisy:0.05), persistence.",
)
@click.option(
    "--capacity",
    type=click.IntRange(min=1),
    default=None,
    help="Concurrent jobs per pool (GPUs per pool for the stream). [default: unlimited]",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a PNG: a sample week with each policy's placements, and the savings.",
)
def simulate(
    traces: tuple[str, ...],
    workload: str,
    jobs: int,
    rate: float | None,
    diurnal: bool,
    startup_seconds: float,
    days: int | None,
    deadline: str,
    forecast: str,
    capacity: int | None,
    seed: int,
    as_json: bool,
    plot: Path | None,
) -> None:
    """Replay a year of grid carbon intensity and compare launch policies."""
    from offpeak.plan import simulate as sim
    from offpeak.plan import stream
    from offpeak.schemas import window_seconds

    try:
        deadline_h = window_seconds(deadline) / 3600
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--deadline") from None
    resolved = [sim.resolve_trace(t) for t in traces or ("DE",)]
    report: sim.Report | stream.StreamReport
    if workload == "stream":
        if rate is None:
            raise click.BadParameter("the stream workload needs a rate", param_hint="--rate")
        if plot is not None:
            raise click.BadParameter("plots are for the jobs workload", param_hint="--plot")
        report = stream.simulate_stream(
            resolved,
            rate=rate,
            diurnal=diurnal,
            deadline_h=deadline_h,
            forecast=forecast,
            capacity=capacity,
            startup_s=startup_seconds,
            seed=seed,
            days=days,
        )
    else:
        report = sim.simulate(
            resolved,
            jobs=jobs,
            deadline_h=deadline_h,
            forecast=forecast,
            capacity=capacity,
            seed=seed,
        )
    if plot is not None and isinstance(report, sim.Report):
        sim.plot(report, plot)
    if as_json:
        click.echo(json.dumps(report.to_json()))
        for note in report.notes():
            click.echo(note, err=True)
    else:
        click.echo(report.heading())
        table = _table("policy", ">kgCO2e", ">misses", ">g/kWh", ">saving")
        savings = report.savings()
        for name, o in report.outcomes.items():
            table.add_row(
                name,
                f"{o.gco2e / 1000:.2f}",
                str(o.misses),
                f"{o.mean_intensity:.1f}",
                f"{savings[name]:.2f}%",
            )
        _print(table)
        for note in report.notes():
            click.echo(note)
