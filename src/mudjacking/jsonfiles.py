"""Reading the JSON files a model folder or a stranger's report holds, so that none of them can crash the tool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 16 * 2**20
"""A model's config or preprocessor JSON is a few KB; a tokenizer.json a few MB (not read here)."""
JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def read_json_file(
    path: Path, error: type[Exception], fix: str, expected: type = dict, max_bytes: int = MAX_CONFIG_BYTES
) -> Any:
    """The JSON value in ``path``, of type ``expected`` (an object unless said); anything else (too large, not UTF-8,
    invalid, nested too deep to parse, another type) raises ``error`` with one line naming the file and ``fix``."""
    size = path.stat().st_size
    if size > max_bytes:
        raise error(f"{path}: {size:,} bytes, more than such a file holds ({max_bytes:,}); {fix}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as failure:
        raise error(f"{path}: not UTF-8 text; {fix}") from failure
    except json.JSONDecodeError as failure:
        raise error(f"{path}: not valid JSON (line {failure.lineno}: {failure.msg}); {fix}") from failure
    except RecursionError as failure:
        raise error(f"{path}: JSON nested too deep to read; {fix}") from failure
    if not isinstance(value, expected):
        found, wanted = (JSON_NAMES.get(t, t.__name__) for t in (type(value), expected))
        raise error(f"{path}: a JSON {found} where {wanted} is expected; {fix}")
    return value
