"""Rollouts: G sampled completions per prompt from an engine (engines/), knowing nothing of training."""
