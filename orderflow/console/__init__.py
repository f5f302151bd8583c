"""`orderflow console`: the browser console for the people in the handbook (order entry, work queues,
decisions, order pages), acting only through the public contract and reading its own read model."""
