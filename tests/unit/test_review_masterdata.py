"""Review's in-memory master data: the latest record per key wins, whichever reader applies it first."""

from contracts import topics
from contracts.public import CustomerUpserted, ProductUpserted
from services.review.masterdata import MasterData
from tests.factories import customer, product

C = topics.MASTERDATA_CUSTOMERS


def test_a_later_record_replaces_an_earlier_one_and_an_older_one_is_ignored() -> None:
    memory = MasterData()
    old = CustomerUpserted.model_validate(customer("C-1", credit_limit="10.00"))
    new = CustomerUpserted.model_validate(customer("C-1", credit_limit="20.00"))
    assert memory.apply(C, 2, 5, old) and memory.apply(C, 2, 9, new)
    assert not memory.apply(C, 2, 5, old)  # the follower reading what the group's handler already applied
    assert memory.customers["C-1"] is new
    assert memory.apply(C, 2, 9, new)  # the same record again is harmless


def test_products_are_kept_by_sku_and_only_a_fed_by_handlers_memory_is_ready_at_once() -> None:
    memory = MasterData()
    sku = ProductUpserted.model_validate(product("SKU-0003"))
    memory.apply(topics.MASTERDATA_PRODUCTS, 0, 0, sku)
    assert memory.products == {"SKU-0003": sku} and memory.customers == {}
    assert not memory.ready.is_set()
    assert MasterData.fed_by_handlers().ready.is_set()
