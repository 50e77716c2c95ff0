"""VILA/NaVILA-style vision-language model: architecture, checkpoints, inference utilities."""
