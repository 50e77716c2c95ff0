"""Rollout viewer (local web page) and video export."""
