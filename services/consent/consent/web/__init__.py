"""Static web assets served by the API (the reference preference center)."""
