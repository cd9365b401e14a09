"""The original service's answers (one JSON file per route, see README.md) and the check that
holds heatup's seed routes to their shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

FOLDER: Final = Path(__file__).parent
EMPTY: Final = "no items"
# What heatup adds to the seed's answers: its run record, and its own health checks and info.
ADDED: Final = frozenset({"run", "checks", "node", "endpoints"})


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def field_types(value: object, path: str = "") -> dict[str, set[str]]:
    """Every field path of a JSON document (``.a.b[].c``) and the JSON types found there;
    the items of an empty array have the type ``EMPTY``."""
    found: dict[str, set[str]] = {path or ".": {json_type(value)}}
    children: list[tuple[str, object]] = []
    if isinstance(value, dict):
        children = [(f"{path}.{key}", item) for key, item in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[]", item) for item in value]
        if not value:
            found[f"{path}[]"] = {EMPTY}
    for child_path, item in children:
        for key, types in field_types(item, child_path).items():
            found.setdefault(key, set()).update(types)
    return found


def within_empty(path: str, found: dict[str, set[str]]) -> bool:
    """Whether ``path`` lies inside an array that is empty in ``found``."""
    parts = path.split("[]")
    prefixes = ("[]".join(parts[: index + 1]) + "[]" for index in range(len(parts) - 1))
    return any(found.get(prefix) == {EMPTY} for prefix in prefixes)


def assert_seed_shape(recorded: str, answer: object) -> None:
    """Every field path of the recorded answer exists in ``answer`` with a type the original
    service gave it there (a path inside an array ``answer`` has empty cannot be checked),
    and ``answer`` adds no top-level key but ``ADDED``."""
    seed = field_types(json.loads((FOLDER / recorded).read_text()))
    ours = field_types(answer)
    missing = sorted(p for p in set(seed) - set(ours) if not within_empty(p, ours))
    assert missing == [], f"fields a seed client reads are missing: {missing}"
    changed = {
        p: (sorted(ours[p]), sorted(seed[p]))
        for p in seed
        if p in ours and not ours[p] - {EMPTY} <= seed[p]
    }
    assert changed == {}, f"fields whose type changed (ours, the seed's): {changed}"
    assert isinstance(answer, dict)
    top = {path.split(".")[1].split("[")[0] for path in seed if path != "."}
    assert set(answer) - top <= ADDED, set(answer) - top
