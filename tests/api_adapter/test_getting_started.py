"""EXXA's getting-started snippets, run as written against the live server.

Each snippet runs in its own Python process with EXXA_API_KEY set; only the base URL
and the placeholder ids are substituted.
"""

from __future__ import annotations

from tests.api_adapter.conftest import LiveApi
from tests.utils import exxa_snippets as snippets
from tests.utils.exxa_snippets import printed, run_snippet


def run(live_api: LiveApi, key: str, code: str, **ids: str) -> list[str]:
    return run_snippet(live_api.base_url, key, code, **ids)


def test_getting_started_snippets_run_verbatim(live_api: LiveApi, key: str) -> None:
    created = [printed(run(live_api, key, snippets.SEND_REQUEST)[0]) for _ in range(3)]
    assert all(r["status"] == "registered" and len(r["id"]) == 24 for r in created)
    first, second, third = (r["id"] for r in created)

    batch = printed(
        run(live_api, key, snippets.CREATE_BATCH, request_id1=first, request_id2=second)[0]
    )
    assert batch["status"] == "registered" and isinstance(batch["id"], str)
    assert batch["metadata"] == {"batch_name": "MyFirstBatch"}

    status = printed(run(live_api, key, snippets.BATCH_STATUS, batch_id_here=batch["id"])[0])
    assert status["id"] == batch["id"] and status["status"] == "registered"

    status = printed(run(live_api, key, snippets.REQUEST_STATUS, request_id_here=third)[0])
    assert status == created[2]

    # Results come once the batch is completed; before that, a clear 409.
    (results,) = run(live_api, key, snippets.BATCH_RESULTS, batch_id_here=batch["id"])
    assert "batch_not_completed" in results and "once it is completed" in results

    batch_cancel, request_cancel = (
        printed(line)
        for line in run(
            live_api, key, snippets.CANCEL, batch_id_here=batch["id"], request_id_here=third
        )
    )
    assert batch_cancel["id"] == batch["id"] and batch_cancel["status"] == "cancelled"
    assert request_cancel["id"] == third and request_cancel["status"] == "cancelled"
    with live_api.client(key) as api:
        statuses = {api.get(f"/v1/requests/{r}/status").json()["status"] for r in (first, second)}
    assert statuses == {"cancelled"}
