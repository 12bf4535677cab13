"""The owner map (`llm_proxy.proxy.owners`): bounded per key and in total so that one tenant
never evicts another's entries, and the `object_owners` table behind it in database mode (the
creating key and a batch file's models shared by every instance, a batch charged once, a
deleted object forgotten, only responses pruned)."""

from __future__ import annotations

import asyncio

import asyncpg

from llm_proxy.proxy.owners import KEEP_DAYS, Owner, Owners
from tests.helpers import eventually


async def test_a_key_evicts_only_its_own_entries() -> None:
    owners = Owners(size=10, per_key=4)
    owners.remember("a-kept", "p", "file", "alice")
    for i in range(3):
        owners.remember(f"b-{i}", "p", "file", "bob")
    for i in range(100):  # alice creates far more than her share
        owners.remember(f"a-{i}", "p", "file", "alice")
    assert owners.known("a-kept") is None  # her own oldest went first
    assert [owners.known(f"a-{i}") is not None for i in range(96, 100)] == [True] * 4
    assert all(owners.known(f"b-{i}") == Owner("p", "bob") for i in range(3))


async def test_when_the_map_is_full_the_largest_key_gives_way() -> None:
    owners = Owners(size=10, per_key=6)
    for i in range(6):
        owners.remember(f"a-{i}", "p", "file", "alice")
    for i in range(3):
        owners.remember(f"b-{i}", "p", "file", "bob")
    for i in range(3):  # the map is full: alice, holding the most, loses her oldest
        owners.remember(f"c-{i}", "p", "file", "carol")
    assert all(owners.known(f"b-{i}") is not None for i in range(3))
    assert all(owners.known(f"c-{i}") is not None for i in range(3))
    assert [owners.known(f"a-{i}") is not None for i in range(6)] == [False, False] + [True] * 4


async def test_a_lookup_keeps_an_entry_and_a_delete_forgets_it() -> None:
    owners = Owners(size=100, per_key=3)
    for i in range(3):
        owners.remember(f"a-{i}", "p", "file", "alice")
    assert owners.known("a-0") is not None  # used: now the newest
    owners.remember("a-3", "p", "file", "alice")
    assert owners.known("a-0") is not None and owners.known("a-1") is None
    owners.forget("a-0")
    assert owners.known("a-0") is None
    payer = Owner("p", "alice")
    assert await owners.charge_once("batch_1", payer)
    assert not await owners.charge_once("batch_1", payer)


async def test_the_table_carries_the_key_and_the_models(config_dsn: str) -> None:
    one, two = Owners(config_dsn), Owners(config_dsn)
    try:
        one.remember("file-1", "east", "file", "alice", frozenset({"m1", "m2"}))
        one.remember("resp_1", "west", "response", None)
        assert await two.owner("file-1") == Owner("east", "alice", frozenset({"m1", "m2"}))
        assert await two.owner("resp_1") == Owner("west", None)
        assert await two.owners(["file-1", "resp_1", "nope"]) == {
            "file-1": Owner("east", "alice", frozenset({"m1", "m2"})),
            "resp_1": Owner("west", None),
        }
        # A batch's usage is charged by exactly one instance, however many see it finish.
        payer = Owner("east", "alice")
        results = await asyncio.gather(
            *(o.charge_once("file-1", payer) for o in (one, two, one, two))
        )
        assert sorted(results) == [False, False, False, True]
        # A batch whose row is not there (yet, or any more) is charged all the same, once.
        unseen = await asyncio.gather(*(o.charge_once("batch_2", payer) for o in (one, two)))
        assert sorted(unseen) == [False, True]
        one.forget("file-1")
        await one.close()  # waits for its writes
        fresh = Owners(config_dsn)
        try:
            assert await fresh.owner("file-1") is None
        finally:
            await fresh.close()
    finally:
        await one.close()
        await two.close()


async def test_only_responses_are_pruned(config_dsn: str) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        old = f"now() - interval '{KEEP_DAYS + 1} days'"
        await sql.execute(
            "INSERT INTO object_owners (id, provider, kind, key_name, created_at) VALUES "
            f"('resp_old', 'p', 'response', 'a', {old}), ('file-old', 'p', 'file', 'a', {old}),"
            f"('batch_old', 'p', 'batch', 'a', {old}), ('resp_new', 'p', 'response', 'a', now())"
        )
        owners = Owners(config_dsn)
        owners.start()
        try:

            async def swept() -> bool:
                return await sql.fetchval("SELECT count(*) FROM object_owners") == 3

            await eventually(swept, timeout=10)
        finally:
            await owners.close()
        kept = await sql.fetch("SELECT id FROM object_owners ORDER BY id")
        assert [r["id"] for r in kept] == ["batch_old", "file-old", "resp_new"]
    finally:
        await sql.close()
