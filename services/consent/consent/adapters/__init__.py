"""Adapters: everything that does I/O (PostgreSQL, Kafka, HTTP)."""
