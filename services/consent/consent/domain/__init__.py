"""Pure consent rules: no FastAPI, SQL or Kafka imports anywhere in this package."""
