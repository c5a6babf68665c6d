"""The config: a pydantic schema where every key documents itself, YAML loading, presets and `--set`."""
