"""DocStore on the real store: what it writes (packed fields), and that it reads every earlier stored form."""

import json
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.runtime.outbox import Doc, DocStore, packed, unpacked

STATE: dict[str, Any] = {"status": "reserved", "lines": [{"line_no": 1, "sku": "SKU-1", "qty": 2}], "note": "é ü"}


def test_packed_fields_round_trip_and_empty_ones_stay_as_they_are() -> None:
    body = {"_id": "order:x", "v": 3, "state": STATE, "inbox": ["a", "b"], "pending": []}
    stored = packed(body)
    assert isinstance(stored["state"], bytes) and isinstance(stored["inbox"], bytes)
    assert len(stored["state"]) < len(json.dumps(STATE))
    assert stored["pending"] == [] and stored["v"] == 3 and stored["_id"] == "order:x"
    assert unpacked(stored) == body
    assert unpacked(body) == body  # a document written nested (before packing) reads as it was
    as_strings = {**body, "state": json.dumps(STATE), "inbox": json.dumps(["a", "b"])}  # packed before compression
    assert unpacked(as_strings) == body


async def test_docstore_writes_one_binary_per_field_and_reads_every_form(
    scratch: AsyncDatabase[dict[str, Any]],
) -> None:
    store = DocStore(scratch["things"])
    doc = Doc("order:1", 0, STATE, ["in-1"], [{"topic": "t", "value": "{}"}], dirty=True)
    await store.save_many([doc])
    raw = await scratch["things"].find_one({"_id": "order:1"})
    assert raw is not None and isinstance(raw["state"], bytes) and isinstance(raw["pending"], bytes)
    await scratch["things"].insert_one({"_id": "order:old", "v": 1, "state": STATE, "inbox": [], "pending": []})
    text = {"_id": "order:text", "v": 1, "state": json.dumps(STATE), "inbox": '["in-2"]', "pending": []}
    await scratch["things"].insert_one(text)
    loaded = await store.load_many(["order:1", "order:old", "order:text", "order:none"])
    assert loaded["order:1"].state == STATE and loaded["order:1"].inbox == ["in-1"]
    assert loaded["order:1"].version == 1
    assert loaded["order:old"].state == STATE and loaded["order:none"].state is None
    assert loaded["order:text"].state == STATE and loaded["order:text"].inbox == ["in-2"]
    loaded["order:1"].state, loaded["order:1"].dirty = {**STATE, "status": "shipped"}, True
    await store.save_many([loaded["order:1"]])
    shipped = {**STATE, "status": "shipped"}
    assert (await store.scan("order:")) == {"order:1": shipped, "order:old": STATE, "order:text": STATE}


async def test_setup_drops_the_order_number_index_nothing_queries(scratch: AsyncDatabase[dict[str, Any]]) -> None:
    await scratch["things"].create_index("state.order_number", sparse=True)  # as versions before packing did
    await DocStore(scratch["things"]).setup()
    await DocStore(scratch["things"]).setup()  # again: nothing left to drop
    assert list(await scratch["things"].index_information()) == ["_id_"]
