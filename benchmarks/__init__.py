"""Metrics, the episode runner, results store, trajectory collection and the CLI."""
