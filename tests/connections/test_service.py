"""Connections and their access tokens: encrypted at rest, decrypted for a call,
readable across a SECRET_KEY rotation, replaced by adding them again."""

import pytest
from sqlalchemy import text

from app.connections import service
from app.connections.models import Connection
from app.core.db import Database
from app.core.secrets import SecretBox, UndecryptableSecret
from tests.conftest import ACCESS_TOKEN, CONNECTION_ID

pytestmark = pytest.mark.asyncio

OLD_KEY = "old-secret-key-0123456789-abcdefghijklmnop"
NEW_KEY = "new-secret-key-9876543210-zyxwvutsrqponmlk"
UNRELATED_KEY = "unrelated-secret-key-000000000000000000000"
OTHER_ID = "conn_second_0000000001"
OTHER_TOKEN = "tok_second_connection_secret_000000000001"
NEW_TOKEN = "tok_replacement_secret_9c1d7e3a40685f2b"


async def add(
    database: Database,
    box: SecretBox,
    *,
    connection_id: str = CONNECTION_ID,
    token: str = ACCESS_TOKEN,
    integration_name: str | None = "shopify",
) -> None:
    async with database.transaction() as session:
        await service.add_connection(
            session,
            box,
            connection_id=connection_id,
            access_token=token,
            integration_name=integration_name,
        )


async def stored_ciphertext(database: Database, connection_id: str) -> str:
    async with database.transaction() as session:
        value = await session.scalar(
            text("SELECT access_token_encrypted FROM connections WHERE id = :id"),
            {"id": connection_id},
        )
    assert isinstance(value, str)
    return value


async def token_with(database: Database, box: SecretBox, connection_id: str) -> str:
    async with database.transaction() as session:
        credentials = await service.credentials_for(session, box, connection_id)
    assert credentials is not None
    return credentials.access_token.get_secret_value()


async def connection(database: Database, connection_id: str = CONNECTION_ID):
    async with database.transaction() as session:
        found = await session.get(Connection, connection_id)
    assert found is not None
    return found


async def test_stored_token_column_never_contains_the_token(database):
    box = SecretBox([NEW_KEY])

    await add(database, box)

    stored = await stored_ciphertext(database, CONNECTION_ID)
    assert ACCESS_TOKEN not in stored
    assert ACCESS_TOKEN.removeprefix("tok_") not in stored
    assert box.decrypt(stored) == ACCESS_TOKEN


async def test_credentials_for_returns_the_decrypted_token(database):
    box = SecretBox([NEW_KEY])
    await add(database, box)

    async with database.transaction() as session:
        credentials = await service.credentials_for(session, box, CONNECTION_ID)

    assert credentials is not None
    assert credentials.connection_id == CONNECTION_ID
    assert credentials.integration_name == "shopify"
    assert credentials.access_token.get_secret_value() == ACCESS_TOKEN
    assert ACCESS_TOKEN not in repr(credentials)
    assert ACCESS_TOKEN not in str(credentials)


async def test_credentials_for_an_unknown_connection_are_none(database):
    async with database.transaction() as session:
        credentials = await service.credentials_for(
            session, SecretBox([NEW_KEY]), "conn_unknown"
        )

    assert credentials is None


async def test_token_encrypted_with_the_old_key_decrypts_with_both_keys(database):
    await add(database, SecretBox([OLD_KEY]))

    token = await token_with(database, SecretBox([NEW_KEY, OLD_KEY]), CONNECTION_ID)

    assert token == ACCESS_TOKEN


async def test_new_tokens_are_encrypted_with_the_first_key(database):
    await add(database, SecretBox([NEW_KEY, OLD_KEY]))

    assert await token_with(database, SecretBox([NEW_KEY]), CONNECTION_ID) == (
        ACCESS_TOKEN
    )
    with pytest.raises(UndecryptableSecret):
        await token_with(database, SecretBox([OLD_KEY]), CONNECTION_ID)


async def test_reencrypt_makes_old_tokens_readable_with_the_new_key_alone(database):
    await add(database, SecretBox([OLD_KEY]))
    await add(database, SecretBox([OLD_KEY]), connection_id=OTHER_ID, token=OTHER_TOKEN)

    async with database.transaction() as session:
        count = await service.reencrypt_tokens(session, SecretBox([NEW_KEY, OLD_KEY]))

    assert count == 2
    new_only = SecretBox([NEW_KEY])
    assert await token_with(database, new_only, CONNECTION_ID) == ACCESS_TOKEN
    assert await token_with(database, new_only, OTHER_ID) == OTHER_TOKEN
    with pytest.raises(UndecryptableSecret):
        await token_with(database, SecretBox([OLD_KEY]), CONNECTION_ID)
    assert ACCESS_TOKEN not in await stored_ciphertext(database, CONNECTION_ID)


async def test_box_with_only_an_unrelated_key_cannot_decrypt(database):
    await add(database, SecretBox([OLD_KEY]))

    with pytest.raises(UndecryptableSecret) as raised:
        await token_with(database, SecretBox([UNRELATED_KEY]), CONNECTION_ID)

    assert ACCESS_TOKEN not in str(raised.value)
    assert OLD_KEY not in str(raised.value)
    assert UNRELATED_KEY not in str(raised.value)


async def test_reencrypt_with_an_unrelated_key_changes_nothing(database):
    await add(database, SecretBox([OLD_KEY]))
    before = await stored_ciphertext(database, CONNECTION_ID)

    with pytest.raises(UndecryptableSecret):
        async with database.transaction() as session:
            await service.reencrypt_tokens(session, SecretBox([UNRELATED_KEY]))

    assert await stored_ciphertext(database, CONNECTION_ID) == before
    assert await token_with(database, SecretBox([OLD_KEY]), CONNECTION_ID) == (
        ACCESS_TOKEN
    )


async def test_readding_a_connection_replaces_its_token(database):
    box = SecretBox([NEW_KEY])
    await add(database, box)
    first = await connection(database)

    await add(database, box, token=NEW_TOKEN)

    assert await token_with(database, box, CONNECTION_ID) == NEW_TOKEN
    again = await connection(database)
    assert again.created_at == first.created_at
    assert again.updated_at >= first.updated_at
    async with database.transaction() as session:
        assert len(await service.list_connections(session)) == 1


async def test_readding_a_connection_clears_its_suspension(database):
    box = SecretBox([NEW_KEY])
    await add(database, box)
    async with database.transaction() as session:
        await service.suspend_connection(
            session, connection_id=CONNECTION_ID, reason="Trackstar answered 401"
        )
    suspended = await connection(database)
    assert suspended.suspended_at is not None
    assert suspended.suspended_reason == "Trackstar answered 401"

    await add(database, box, token=NEW_TOKEN)

    lifted = await connection(database)
    assert lifted.suspended_at is None
    assert lifted.suspended_reason is None


async def test_readding_without_integration_name_keeps_the_stored_one(database):
    box = SecretBox([NEW_KEY])
    await add(database, box, integration_name="shopify")

    await add(database, box, token=NEW_TOKEN, integration_name=None)

    assert (await connection(database)).integration_name == "shopify"


async def test_readding_with_another_integration_name_replaces_it(database):
    box = SecretBox([NEW_KEY])
    await add(database, box, integration_name="shopify")

    await add(database, box, integration_name="bigcommerce")

    assert (await connection(database)).integration_name == "bigcommerce"


async def test_suspending_keeps_the_first_reason(database):
    await add(database, SecretBox([NEW_KEY]))
    async with database.transaction() as session:
        await service.suspend_connection(
            session, connection_id=CONNECTION_ID, reason="first"
        )
    first = await connection(database)

    async with database.transaction() as session:
        await service.suspend_connection(
            session, connection_id=CONNECTION_ID, reason="second"
        )

    again = await connection(database)
    assert again.suspended_reason == "first"
    assert again.suspended_at == first.suspended_at


async def test_remove_deletes_the_connection_and_its_token(database):
    box = SecretBox([NEW_KEY])
    await add(database, box)

    async with database.transaction() as session:
        await service.remove_connection(session, connection_id=CONNECTION_ID)

    async with database.transaction() as session:
        assert await service.list_connections(session) == []
        assert await service.credentials_for(session, box, CONNECTION_ID) is None


async def test_removing_an_unknown_connection_raises_not_found(database):
    with pytest.raises(service.ConnectionNotFound) as raised:
        async with database.transaction() as session:
            await service.remove_connection(session, connection_id="conn_unknown")

    assert raised.value.detail == "No connection with id 'conn_unknown'."
    assert raised.value.status_code == 404


async def test_require_configured_refuses_a_connection_without_token(database):
    with pytest.raises(service.ConnectionNotConfigured) as raised:
        async with database.transaction() as session:
            await service.require_configured(session, "conn_unknown")

    assert raised.value.status_code == 409
    assert "python -m app connections add" in raised.value.detail
