"""Performance harness (issue 9): ``uv run python -m bench``; results in docs/performance.md."""
