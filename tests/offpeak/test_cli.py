"""The `offpeak` command line, run as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from offpeak.state.db import Database
from offpeak.state.keys import authenticate

OFFPEAK = Path(sys.executable).with_name("offpeak")


def offpeak(data_dir: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(OFFPEAK), *args],
        env={**os.environ, "OFFPEAK_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode == 0) == ok, done.stderr
    return done


def test_keys_need_a_migrated_database_and_say_so(tmp_path: Path) -> None:
    done = offpeak(tmp_path, "keys", "list", ok=False)
    assert "offpeak db upgrade" in done.stderr
    assert "Traceback" not in done.stderr


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    offpeak(tmp_path, "db", "upgrade")
    created = json.loads(
        offpeak(
            tmp_path, "keys", "create", "--name", "team-a", "--credits", "12.5", "--json"
        ).stdout
    )
    assert created["key"].startswith("op-") and created["credits_usd"] == 12.5
    plain = offpeak(tmp_path, "keys", "create", "--name", "team-b").stdout.strip()
    assert plain.startswith("op-")

    listed = [
        json.loads(line) for line in offpeak(tmp_path, "keys", "list", "--json").stdout.splitlines()
    ]
    assert [k["name"] for k in listed] == ["team-a", "team-b"]
    assert all("key" not in k for k in listed)
    assert created["key"] not in offpeak(tmp_path, "keys", "list").stdout

    offpeak(tmp_path, "keys", "revoke", created["id"])
    db = Database(f"sqlite:///{tmp_path / 'offpeak.db'}")
    with pytest.raises(PermissionError, match="revoked"):
        authenticate(db, created["key"])
    assert authenticate(db, plain).name == "team-b"


def test_revoking_an_unknown_key_is_one_clear_line(tmp_path: Path) -> None:
    offpeak(tmp_path, "db", "upgrade")
    done = offpeak(tmp_path, "keys", "revoke", "nope", ok=False)
    assert done.stderr.strip() == "error: no API key 'nope'"


def test_bad_setting_fails_fast_naming_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(OFFPEAK), "keys", "list"],
        env={**os.environ, "OFFPEAK_DATA_DIR": str(tmp_path), "OFFPEAK_SEAL_INTERVAL": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "OFFPEAK_SEAL_INTERVAL" in done.stderr


def test_api_command_documents_its_options(tmp_path: Path) -> None:
    usage = offpeak(tmp_path, "api", "--help").stdout
    assert "--host" in usage and "--port" in usage


def test_keys_list_is_a_table_a_script_can_read(tmp_path: Path) -> None:
    offpeak(tmp_path, "db", "upgrade")
    odd = "team [red]x[/red] :smile: " + "long " * 20  # markup-like, wider than 80 columns
    first = json.loads(offpeak(tmp_path, "keys", "create", "--name", odd, "--json").stdout)
    second = json.loads(
        offpeak(tmp_path, "keys", "create", "--name", "b", "--credits", "1234.5", "--json").stdout
    )
    offpeak(tmp_path, "keys", "revoke", second["id"])
    header, *rows = offpeak(tmp_path, "keys", "list").stdout.splitlines()
    assert header.split() == ["id", "prefix", "balance", "state", "name"]
    parsed = [row.split(maxsplit=4) for row in rows]
    assert parsed == [
        [first["id"], first["key"][:10] + "…", "$10.00", "active", odd.strip()],
        [second["id"], second["key"][:10] + "…", "$1234.50", "revoked", "b"],
    ]
    assert all(row == row.rstrip() and "\x1b" not in row for row in rows)
