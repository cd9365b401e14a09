"""Fault injection for the sandbox: ``--faults "latency=5-20ms,5xx=0.1,429=0.05,seed=7"``.

Keys (shares are probabilities per request to the gateway's paths, drawn once each):

- ``latency=A-Bms`` (or ``A-Bs``, or a single value): added delay, uniform in [A, B];
- ``5xx``: answer 503; ``429``: answer 429 with ``Retry-After: 1``;
- ``hang``: answer nothing until the client gives up (or ``hang_s`` passes);
- ``drop``: start a response and close the connection mid-body;
- ``nonjson``: answer 200 with an HTML error page;
- ``rpc_error``: an RPC fails with a Telegram error heatup has no rule for;
- ``flood``: an RPC gets ``FLOOD_WAIT`` of ``flood_s`` (a range) seconds, and the session's
  flood wait starts, as Telegram's would;
- ``seed``: seed of the fault draws (reproducible runs); ``hang_s``: longest hang.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, fields
from typing import Final

from heatup_daemon.errors import InvalidValue

FAULT_KINDS: Final = ("5xx", "429", "hang", "drop", "nonjson", "rpc_error", "flood")
_LATENCY_RE: Final = re.compile(r"([0-9.]+)(?:-([0-9.]+))?(ms|s)")


@dataclass(frozen=True, slots=True)
class Faults:
    latency_min_s: float = 0.0
    latency_max_s: float = 0.0
    error_5xx: float = 0.0
    error_429: float = 0.0
    hang: float = 0.0
    drop: float = 0.0
    nonjson: float = 0.0
    rpc_error: float = 0.0
    flood: float = 0.0
    hang_s: float = 60.0
    flood_min_s: float = 5.0
    flood_max_s: float = 30.0
    seed: int | None = None

    @property
    def shares(self) -> tuple[tuple[str, float], ...]:
        return (
            ("5xx", self.error_5xx),
            ("429", self.error_429),
            ("hang", self.hang),
            ("drop", self.drop),
            ("nonjson", self.nonjson),
            ("rpc_error", self.rpc_error),
            ("flood", self.flood),
        )


_FIELD_OF: Final = {"5xx": "error_5xx", "429": "error_429"}


def parse_faults(spec: str) -> Faults:
    """Parse a fault spec, or raise ``InvalidValue`` naming the bad part."""
    values: dict[str, float | int | None] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep:
            raise InvalidValue(f"fault {part!r} has no value: write KEY=VALUE")
        if key == "latency":
            values["latency_min_s"], values["latency_max_s"] = _latency(raw)
        elif key == "seed":
            values["seed"] = _number(key, raw, int)
        elif key == "hang_s":
            values["hang_s"] = _number(key, raw, float)
        elif key == "flood_s":
            values["flood_min_s"], values["flood_max_s"] = _latency(raw)
        elif key in FAULT_KINDS:
            share = _number(key, raw, float)
            if not 0 <= share <= 1:
                raise InvalidValue(f"fault share {key}={raw} must be between 0 and 1")
            values[_FIELD_OF.get(key, key)] = share
        else:
            known = ", ".join(("latency", *FAULT_KINDS, "seed", "hang_s", "flood_s"))
            raise InvalidValue(f"unknown fault {key!r}; known: {known}")
    faults = Faults(**values)  # type: ignore[arg-type]
    if sum(share for _, share in faults.shares) > 1:
        raise InvalidValue(f"fault shares add up to more than 1 in {spec!r}")
    return faults


def _latency(raw: str) -> tuple[float, float]:
    match = _LATENCY_RE.fullmatch(raw.strip())
    if match is None:
        raise InvalidValue(f"latency {raw!r}: write e.g. 5ms, 5-20ms or 0.1-0.3s")
    scale = 0.001 if match.group(3) == "ms" else 1.0
    low = float(match.group(1)) * scale
    high = float(match.group(2) or match.group(1)) * scale
    if low > high:
        raise InvalidValue(f"latency {raw!r}: the low end is above the high end")
    return low, high


def _number(key: str, raw: str, kind: type[int] | type[float]) -> float | int:
    try:
        return kind(raw)
    except ValueError:
        raise InvalidValue(f"fault {key}={raw!r} is not a number") from None


def describe(faults: Faults) -> str:
    """The spec text of ``faults`` (only what differs from no faults)."""
    defaults = Faults()
    parts = [
        f"{f.name}={getattr(faults, f.name)}"
        for f in fields(faults)
        if getattr(faults, f.name) != getattr(defaults, f.name)
    ]
    return ",".join(parts) or "none"


class FaultDraw:
    """Draws, per request, the latency and the fault (or ``None``) to inject."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)

    def latency_s(self) -> float:
        low, high = self.faults.latency_min_s, self.faults.latency_max_s
        return self._rng.uniform(low, high) if high > 0 else 0.0

    def flood_s(self) -> int:
        return max(1, round(self._rng.uniform(self.faults.flood_min_s, self.faults.flood_max_s)))

    def fault(self) -> str | None:
        point = self._rng.random()
        for kind, share in self.faults.shares:
            if point < share:
                return kind
            point -= share
        return None
