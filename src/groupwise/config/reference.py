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


def reference_markdown() -> str:
    """One markdown table row per config key: key, default, description."""
    lines = ["| key | default | description |", "|---|---|---|"]
    for section, section_field in Config.model_fields.items():
        model = section_field.annotation
        for name, field in model.model_fields.items():
            description = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{section}.{name}` | `{_default(field)}` | {description} |")
    return "\n".join(lines)
