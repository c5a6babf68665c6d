"""Process-level helpers every layer may use: torch.distributed reductions, seeding, memory, progress, JSONL."""
