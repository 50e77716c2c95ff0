"""Agents: the NaVILA agent, its prompt and parser, and baselines."""
