from decimal import Decimal

import pytest
from sqlalchemy import select

from offpeak.errors import AuthenticationError, InsufficientCredits, InvalidInput, NotFound
from offpeak.state.db import Database
from offpeak.state.keys import (
    add_credits,
    authenticate,
    create_key,
    hash_key,
    list_keys,
    require_balance,
    revoke_key,
)
from offpeak.state.models import ApiKey


def test_create_key_stores_the_hash_not_the_secret(db: Database) -> None:
    key, secret = create_key(db, "  team a  ", "12.5")
    assert secret.startswith("op-")
    with db.session() as session:
        stored = session.scalar(select(ApiKey).where(ApiKey.id == key.id))
    assert stored is not None
    assert stored.key_hash == hash_key(secret)
    assert secret not in {stored.key_hash, stored.prefix, stored.name}
    assert secret.startswith(stored.prefix)
    assert stored.name == "team a"
    assert stored.credits_usd == Decimal("12.5")
    assert stored.revoked_at is None


def test_create_key_gives_distinct_secrets(db: Database) -> None:
    secrets = {create_key(db, "k", 1)[1] for _ in range(5)}
    assert len(secrets) == 5


@pytest.mark.parametrize(("name", "credits"), [("k", "-1"), ("   ", "1")])
def test_create_key_refuses_negative_credits_or_blank_name(
    db: Database, name: str, credits: str
) -> None:
    with pytest.raises(InvalidInput):
        create_key(db, name, credits)
    assert list_keys(db) == []


def test_list_keys_returns_every_key_in_id_order(db: Database) -> None:
    made = [create_key(db, f"k{i}", 1)[0].id for i in range(3)]
    assert [k.id for k in list_keys(db)] == sorted(made)


def test_authenticate_returns_the_active_key(db: Database) -> None:
    key, secret = create_key(db, "k", "3")
    found = authenticate(db, secret)
    assert found.id == key.id
    assert found.credits_usd == Decimal("3")


@pytest.mark.parametrize("secret", [None, "", "op-not-a-real-key"])
def test_authenticate_refuses_missing_or_unknown_secret(db: Database, secret: str | None) -> None:
    create_key(db, "k", 1)
    with pytest.raises(AuthenticationError) as caught:
        authenticate(db, secret)
    assert caught.value.code == "invalid_api_key"


def test_revoked_key_no_longer_authenticates(db: Database) -> None:
    key, secret = create_key(db, "k", 1)
    revoked = revoke_key(db, key.id)
    assert revoked.revoked_at is not None
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate(db, secret)


def test_revoke_key_by_printed_prefix(db: Database) -> None:
    key, secret = create_key(db, "k", 1)
    assert revoke_key(db, secret[:10]).id == key.id
    with pytest.raises(AuthenticationError):
        authenticate(db, secret)


def test_revoke_key_twice_keeps_the_first_revocation_time(db: Database) -> None:
    key, _ = create_key(db, "k", 1)
    first = revoke_key(db, key.id).revoked_at
    assert revoke_key(db, key.id).revoked_at == first


def test_revoke_unknown_key_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        revoke_key(db, "0" * 24)


def test_add_credits_raises_the_balance(db: Database) -> None:
    key, secret = create_key(db, "k", "1.25")
    add_credits(db, key.id, "0.75")
    assert authenticate(db, secret).credits_usd == Decimal("2")


def test_add_credits_to_unknown_key_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        add_credits(db, "0" * 24, 1)


def test_require_balance_raises_under_the_minimum(db: Database) -> None:
    _, secret = create_key(db, "k", "0.10")
    with pytest.raises(InsufficientCredits, match=r"\$0\.10 is below the \$0\.20") as caught:
        require_balance(authenticate(db, secret), 0.20)
    assert caught.value.code == "insufficient_credits"


def test_require_balance_accepts_exactly_the_minimum(db: Database) -> None:
    _, secret = create_key(db, "k", "0.20")
    require_balance(authenticate(db, secret), 0.20)
