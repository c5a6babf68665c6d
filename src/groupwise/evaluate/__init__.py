"""Measurement: held-out accuracy, unbiased pass@k per problem, pass rates and difficulty slices."""
