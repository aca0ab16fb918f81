"""Outbox relay: committed outbox rows → Kafka, in order, at least once."""
