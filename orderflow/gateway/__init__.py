"""The HTTP order gateway: channels that cannot produce to Kafka submit orders, revisions and cancellations
over HTTP and read their orders' status; it applies the public contract as the services read it and adds no
business rules of its own (`orderflow gateway`)."""
