"""The store's update command as the services use it (FerretDB patches 2, 8, 9 and 10): a bulk of version-guarded
updates is written whole, a statement sees what an earlier one of the same command changed, concurrent
increments of one document are never lost, and a document kept decoded is never changed by its readers."""

import asyncio
from typing import Any

import pytest
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

Collection = AsyncCollection[dict[str, Any]]


@pytest.fixture
async def things(scratch: AsyncDatabase[dict[str, Any]]) -> Collection:
    await scratch["things"].insert_many([{"_id": f"k{i}", "v": 1, "n": 0} for i in range(5)])
    return scratch["things"]


async def stored(things: Collection) -> dict[str, tuple[int, int]]:
    return {d["_id"]: (d["v"], d["n"]) async for d in things.find({})}


async def test_a_bulk_of_guarded_updates_is_written_whole_and_counts_its_matches(things: Collection) -> None:
    ops = [UpdateOne({"_id": f"k{i}", "v": 1}, {"$set": {"v": 2, "n": i}}) for i in range(4)]
    ops.append(UpdateOne({"_id": "k4", "v": 7}, {"$set": {"v": 8}}))  # a stale guard matches nothing
    result = await things.bulk_write(ops, ordered=False)
    assert (result.matched_count, result.modified_count) == (4, 4)
    assert await stored(things) == {"k0": (2, 0), "k1": (2, 1), "k2": (2, 2), "k3": (2, 3), "k4": (1, 0)}


async def test_a_statement_sees_what_an_earlier_one_of_the_same_command_changed(things: Collection) -> None:
    ops = [
        UpdateOne({"_id": "k0", "v": 1}, {"$set": {"v": 2}}),
        UpdateOne({"_id": "k0", "v": 2}, {"$set": {"v": 3}}),  # the same document again, guarded by the new version
        UpdateOne({"_id": "k1", "v": 1}, {"$set": {"v": 2}}),
        UpdateOne({"v": 2, "_id": {"$in": ["k1"]}}, {"$inc": {"n": 5}}),  # no plain _id: reads the changes first
        UpdateOne({"_id": "k9"}, {"$set": {"v": 1, "n": 9}}, upsert=True),
        UpdateOne({"_id": "k9", "v": 1}, {"$inc": {"n": 1}}),
    ]
    result = await things.bulk_write(ops, ordered=False)
    assert (result.matched_count, result.upserted_count) == (5, 1)
    assert await stored(things) == {"k0": (3, 0), "k1": (2, 5), "k2": (1, 0), "k3": (1, 0), "k4": (1, 0), "k9": (1, 10)}


async def test_concurrent_increments_of_one_document_are_never_lost(things: Collection) -> None:
    await asyncio.gather(*(things.update_one({"_id": "k0"}, {"$inc": {"n": 1}}) for _ in range(100)))
    await asyncio.gather(*(things.bulk_write([UpdateOne({"_id": "k1"}, {"$inc": {"n": 1}})] * 4) for _ in range(25)))
    assert (await stored(things))["k0"] == (1, 100) and (await stored(things))["k1"] == (1, 100)


async def test_a_document_reads_as_stored_after_every_change_and_after_a_refused_update(things: Collection) -> None:
    """Patch 9 keeps decoded documents by their stored JSON: never stale, also when a document is stored again as
    an earlier content; and an update refused halfway (after changing its copy) leaves the kept one as stored."""
    for _ in range(3):
        await things.update_one({"_id": "k0"}, {"$set": {"n": 1}})
        assert (await stored(things))["k0"] == (1, 1)
        await things.update_one({"_id": "k0"}, {"$inc": {"n": 1}})
        assert (await stored(things))["k0"] == (1, 2)
    await things.update_one({"_id": "k1"}, {"$set": {"s": "x"}})
    with pytest.raises(PyMongoError, match="non-numeric"):
        await things.update_one({"_id": "k1"}, {"$set": {"n": 5}, "$inc": {"s": 1}})  # $set applied, then refused
    assert await things.find_one({"_id": "k1"}) == {"_id": "k1", "v": 1, "n": 0, "s": "x"}
