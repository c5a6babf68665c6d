"""The configuration reference, generated from the pydantic field descriptions (one source for help and docs)."""

from __future__ import annotations

import json

from pydantic import BaseModel

from groupwise.config.schema import Config


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        value = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        if isinstance(value, list):
            value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    else:
        value = field.default
    return json.dumps(value)


def _rows(prefix: str, model: type[BaseModel]) -> list[str]:
    """The rows of one section; a nested section (rollout.vllm) gets a row per key of its own."""
    lines = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            lines += _rows(f"{prefix}{name}.", field.annotation)
            continue
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{prefix}{name}` | `{_default(field)}` | {description} |")
    return lines


def reference_markdown() -> str:
    """One markdown table row per config key: key, default, description."""
    lines = ["| key | default | description |", "|---|---|---|"]
    for section, section_field in Config.model_fields.items():
        lines += _rows(f"{section}.", section_field.annotation)
    return "\n".join(lines)
