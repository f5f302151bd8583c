"""How many examples property tests draw: fewer under `make test-fast` (ORDERFLOW_TEST_FAST=1), all in `make test`."""

import os


def examples(full: int) -> int:
    """`full` examples normally; an eighth (at least 20) when ORDERFLOW_TEST_FAST is set."""
    return max(full // 8, 20) if os.environ.get("ORDERFLOW_TEST_FAST") else full
