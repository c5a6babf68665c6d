"""Models: loading (names, GGUF, tiny-random), precision, per-token log-probs, export."""
