"""Use cases. They read and write through a unit of work and never commit."""
