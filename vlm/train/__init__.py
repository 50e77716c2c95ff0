"""Training the VLM on collected trajectories."""
