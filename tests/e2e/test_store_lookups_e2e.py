"""Key lookups on the real store as the services make them (FerretDB patches 6 and 11): `_id` equality and a
string `$in` of any size find exactly the stored documents whatever characters the keys hold, and statements the
store keeps prepared keep working after their collection is dropped and created again."""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Collection = AsyncCollection[dict[str, Any]]
# channel order references come from outside: quotes, escapes, markup, non-ASCII, controls, spaces
ODD = [
    'order:web:a"b',
    "order:web:back\\slash",
    "order:web:<a&b>",
    "order:web:é ü ß",
    "order:web:☃ 🚚",
    "order:web:t\tab",
]


async def ids_in(things: Collection, keys: list[str]) -> list[str]:
    return sorted([d["_id"] async for d in things.find({"_id": {"$in": keys}})])


async def test_keys_of_any_characters_are_found_alone_and_together(scratch: AsyncDatabase[dict[str, Any]]) -> None:
    things = scratch["things"]
    plain = [f"order:web:{i}" for i in range(300)]
    await things.insert_many([{"_id": k, "v": 1} for k in [*ODD, *plain]])
    for key in ODD:
        assert (await things.find_one({"_id": key}))["_id"] == key  # type: ignore[index]
        assert await ids_in(things, [key]) == [key]
    assert await ids_in(things, [*ODD, "order:web:none", 'order:web:a"']) == sorted(ODD)
    assert await ids_in(things, plain) == sorted(plain)  # a few hundred values in one lookup
    assert await ids_in(things, ["order:web:1", "order:web:1"]) == ["order:web:1"]  # repeated: found once
    assert await ids_in(things, ["nothing"]) == []


async def test_kept_statements_work_after_the_collection_is_dropped_and_created_again(
    scratch: AsyncDatabase[dict[str, Any]],
) -> None:
    for round_ in range(3):
        things = scratch["again"]
        await things.insert_many([{"_id": f"k{i}", "v": round_} for i in range(3)])
        await things.update_one({"_id": "k1", "v": round_}, {"$set": {"v": round_ + 10}})
        assert await ids_in(things, ["k0", "k1", "k9"]) == ["k0", "k1"]
        assert (await things.find_one({"_id": "k1"}))["v"] == round_ + 10  # type: ignore[index]
        await things.drop()
        assert await ids_in(things, ["k0"]) == []
