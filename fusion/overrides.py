"""Hydra override text for values code passes to `train.py` and the stage scripts on their command lines."""

from __future__ import annotations

import re
from pathlib import Path


def quoted_override(key: str, value: Path | str) -> str:
    """`key='value'` as a Hydra override: quoted, so a path or name holding a comma, `=`, a space or brackets stays
    one value (unquoted, `runs/0,2` reads as a sweep); quotes, and backslashes before one, escaped."""
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", str(value))
    text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text)  # before the closing quote
    return f"{key}='{text}'"
