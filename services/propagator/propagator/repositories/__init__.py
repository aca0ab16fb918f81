"""The propagator's adapters to PostgreSQL: the only modules with SQL in them.

Each repository owns its tables' statements and returns frozen dataclasses, never asyncpg
records. A repository works on the connection of the unit of work it belongs to
(``propagator/unit_of_work.py``) and never opens, commits or rolls back a transaction: the
entry point that opened the unit of work decides (tests/test_propagator_transactions.py)."""
