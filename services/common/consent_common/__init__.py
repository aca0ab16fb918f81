"""Code both services share and neither owns: settings base, database and Kafka connection
helpers, logging, time formatting. It imports neither ``consent`` nor ``propagator``."""
