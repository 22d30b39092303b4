"""`offpeak webhooks add|list|remove`: the URLs that receive all events of your key,
through the API (OpenAI's project-level webhooks)."""

from __future__ import annotations

import click

from offpeak.client.commands import _api_options, _client


@click.group()
def webhooks() -> None:
    """Webhook endpoints that receive every event of your key."""


@webhooks.command("add")
@click.argument("url")
@click.option("--description", default=None, help="A note for you.")
@_api_options
def webhooks_add(
    url: str, description: str | None, api_url: str | None, api_key: str | None
) -> None:
    """Register URL for all your events; prints its id."""
    with _client(api_url, api_key) as client:
        endpoint = client.add_webhook_endpoint(url, description)
    click.echo(endpoint.id)


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_api_options
def webhooks_list(as_json: bool, api_url: str | None, api_key: str | None) -> None:
    """List your webhook endpoints, oldest first."""
    with _client(api_url, api_key) as client:
        found = client.list_webhook_endpoints()
    for endpoint in found:
        if as_json:
            click.echo(endpoint.model_dump_json())
        else:
            click.echo(f"{endpoint.id}  {endpoint.url}  {endpoint.description or ''}".rstrip())


@webhooks.command("remove")
@click.argument("endpoint_id")
@_api_options
def webhooks_remove(endpoint_id: str, api_url: str | None, api_key: str | None) -> None:
    """Remove a webhook endpoint: no new events go there."""
    with _client(api_url, api_key) as client:
        client.remove_webhook_endpoint(endpoint_id)
    click.echo(f"removed {endpoint_id}")
