"""Training: the GRPO step, the policy and its reference, FSDP2, the loop, checkpoints and metrics."""
