"""Embedded VLN-CE simulator, generated houses, episode datasets and the Gymnasium env."""
