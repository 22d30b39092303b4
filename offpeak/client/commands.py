"""The `offpeak` commands a data team runs against the API: submit, status, results, cancel.

They go through :class:`offpeak.client.http.OffpeakClient`; the API URL and key come from
OFFPEAK_API_URL / OFFPEAK_API_KEY or the --api-url / --api-key flags. Progress bars
go to stderr, so stdout carries only what scripts capture (the batch id, JSON).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from offpeak.client.http import OffpeakClient, results_format
from offpeak.schemas import BatchObject, DatasetMapping, Status

console = Console(stderr=True)


def _api_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--api-key", envvar="OFFPEAK_API_KEY", default=None, help="API key [OFFPEAK_API_KEY]."
    )(command)
    return click.option(
        "--api-url",
        envvar="OFFPEAK_API_URL",
        default=None,
        help="Base URL of the API [OFFPEAK_API_URL, default http://127.0.0.1:8000].",
    )(command)


def _client(api_url: str | None, api_key: str | None) -> OffpeakClient:
    return OffpeakClient(api_url, api_key)


@contextmanager
def _bytes_bar(label: str) -> Iterator[Callable[[int, int | None], None]]:
    with Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,  # gone once done: an error stays the one line on stderr
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _ended(batch: BatchObject) -> int:
    counts = batch.request_counts
    return counts.completed + counts.failed + counts.cancelled


def _tokens(batch: BatchObject) -> str:
    usage = batch.usage
    return f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens"


def _clock(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _expected(batch: BatchObject) -> str:
    """When the scheduler's plan expects the batch to start and end; empty when unplanned."""
    if batch.status.is_final:
        return ""
    parts = []
    if batch.expected_start_at is not None and not batch.request_counts.in_progress:
        parts.append(f"expected start {_clock(batch.expected_start_at)}")
    if batch.expected_completion_at is not None:
        parts.append(f"expected completion {_clock(batch.expected_completion_at)}")
    return ", ".join(parts)


def _watch(client: OffpeakClient, batch: BatchObject, poll: float) -> BatchObject:
    with Progress(
        TextColumn("processing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TextColumn("{task.fields[tokens]}"),
        TextColumn("{task.fields[expected]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(
            "processing",
            total=batch.request_counts.total or None,
            completed=_ended(batch),
            status=batch.status,
            tokens=_tokens(batch),
            expected=_expected(batch),
        )

        def update(current: BatchObject) -> None:
            bar.update(
                task,
                total=current.request_counts.total or None,
                completed=_ended(current),
                status=current.status,
                tokens=_tokens(current),
                expected=_expected(current),
            )

        return client.wait(batch.id, poll_seconds=poll, on_update=update)


def _summary(batch: BatchObject) -> str:
    c = batch.request_counts
    name = batch.metadata.get("name")
    expected = _expected(batch)
    return (
        f"{batch.id}  {batch.status}  {c.completed} completed, {c.failed} failed, "
        f"{c.cancelled} cancelled, {c.registered + c.in_progress} pending of {c.total}"
        + (f"  ({name})" if name else "")
        + (f"  {expected}" if expected else "")
    )


def _download(client: OffpeakClient, batch_id: str, output: Path, *, partial: bool = False) -> None:
    with _bytes_bar("download") as update:
        client.download_results(batch_id, output, progress=update, partial=partial)
    click.echo(f"results ({results_format(output)}) written to {output}", err=True)


@click.command()
@click.argument("source", metavar="PATH|s3://...")
@click.option("--model", required=True, help="Model every row is sent to.")
@click.option("--prompt-column", default=None, help="Column holding each row's prompt.")
@click.option("--messages-column", default=None, help="Instead: a column of {role, content} lists.")
@click.option("--system", "system_prompt", default=None, help="System prompt for every row.")
@click.option("--id-column", default=None, help="Unique id column, joined back in the results.")
@click.option(
    "--param",
    "parameter_columns",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Per-row parameter from a column, e.g. temperature=temp. Repeatable.",
)
@click.option("--max-tokens", type=int, default=None, help="max_tokens for every row.")
@click.option("--temperature", type=float, default=None, help="temperature for every row.")
@click.option("--window", default="24h", show_default=True, help="Completion window: 1h, 24h...")
@click.option("--name", required=True, help="Name of the batch.")
@click.option(
    "--format", "file_format", type=click.Choice(["parquet", "csv", "jsonl"]), default=None
)
@click.option("--wait", is_flag=True, help="Watch the batch until it ends.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Once ended, write the results here (.parquet or .jsonl); implies --wait.",
)
@click.option("--poll", type=float, default=2.0, show_default=True, help="Seconds between polls.")
@_api_options
def submit(
    source: str,
    model: str,
    prompt_column: str | None,
    messages_column: str | None,
    system_prompt: str | None,
    id_column: str | None,
    parameter_columns: tuple[str, ...],
    max_tokens: int | None,
    temperature: float | None,
    window: str,
    name: str,
    file_format: str | None,
    wait: bool,
    output: Path | None,
    poll: float,
    api_url: str | None,
    api_key: str | None,
) -> None:
    """Submit a dataset (Parquet, CSV, JSONL file or s3:// URI) as one batch; prints its id."""
    try:
        mapping = DatasetMapping(
            model=model,
            prompt_column=prompt_column,
            messages_column=messages_column,
            system_prompt=system_prompt,
            id_column=id_column,
            parameter_columns=list(parameter_columns),
            max_tokens=max_tokens,
            temperature=temperature,
            completion_window=window,
            name=name,
            format=file_format,
        )
    except ValidationError as exc:
        raise click.UsageError("; ".join(e["msg"] for e in exc.errors())) from None
    with _client(api_url, api_key) as client:
        if source.startswith("s3://"):
            batch = client.submit_dataset(source, mapping)
        else:
            with _bytes_bar("upload") as update:
                batch = client.submit_dataset(Path(source), mapping, progress=update)
        click.echo(f"batch {batch.id}: {batch.request_counts.total} requests registered", err=True)
        click.echo(batch.id)
        if not (wait or output):
            return
        batch = _watch(client, batch, poll)
        click.echo(_summary(batch), err=True)
        if output is not None:
            if batch.status == Status.CANCELLED:
                raise click.ClickException(f"batch {batch.id} was cancelled: no results")
            _download(client, batch.id, output)


@click.command()
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="Print the batch object as JSON.")
@click.option(
    "--watch",
    is_flag=True,
    help="Follow the batch to its end with a progress bar (requests ended, tokens so far).",
)
@click.option("--poll", type=float, default=5.0, show_default=True, help="Seconds between polls.")
@_api_options
def status(
    batch_id: str,
    as_json: bool,
    watch: bool,
    poll: float,
    api_url: str | None,
    api_key: str | None,
) -> None:
    """Show a batch's status and request counts; with --watch, follow it to its end."""
    with _client(api_url, api_key) as client:
        batch = client.get_batch(batch_id)
        if watch:
            batch = _watch(client, batch, poll)
    click.echo(batch.model_dump_json() if as_json else _summary(batch))


@click.command()
@click.argument("batch_id")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write: .parquet for Parquet, anything else for JSONL.",
)
@click.option(
    "--partial",
    is_flag=True,
    help="Before the batch completes: the lines of its requests already ended (JSONL).",
)
@_api_options
def results(
    batch_id: str, output: Path, partial: bool, api_url: str | None, api_key: str | None
) -> None:
    """Download a completed batch's results (or, with --partial, those ready so far)."""
    with _client(api_url, api_key) as client:
        _download(client, batch_id, output, partial=partial)


@click.command()
@click.argument("object_id", metavar="ID")
@_api_options
def cancel(object_id: str, api_url: str | None, api_key: str | None) -> None:
    """Cancel a batch (and its unfinished requests) or a single request."""
    with _client(api_url, api_key) as client:
        cancelled = client.cancel(object_id)
    click.echo(f"{cancelled.id}  {cancelled.status}")


COMMANDS = (submit, status, results, cancel)
