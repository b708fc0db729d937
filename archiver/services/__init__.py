"""Use cases: transactions, validation against the source schema, run records."""
