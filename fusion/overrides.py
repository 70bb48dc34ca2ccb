"""Hydra override text for values code passes to `train.py` and the stage scripts on their command lines."""

from __future__ import annotations

import re
from pathlib import Path


def path_override(key: str, path: Path | str) -> str:
    """`key='path'` as a Hydra override: quoted, so a folder whose name holds a comma, `=`, a space or brackets
    stays one value (unquoted, `runs/0,2` reads as a sweep); quotes, and backslashes before one, escaped."""
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", str(path))
    text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text)  # before the closing quote
    return f"{key}='{text}'"
