"""Development tooling, not part of the product: the local servers (:mod:`orderflow.dev.stack`) and the benchmark."""
