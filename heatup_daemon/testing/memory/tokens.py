"""The LLM token ledger (``db/tokens.py``)."""

from __future__ import annotations

from datetime import date

from heatup_daemon.testing.memory.tables import MemoryTables


class MemoryTokens(MemoryTables):
    """The LLM token ledger (``db/tokens.py``)."""

    async def tokens_spent(self, day: date) -> int:
        self._check()
        return self.tokens.get(day, 0)

    async def reserve_tokens(self, key: str, day: date, tokens: int, budget: int) -> bool:
        self._check()
        if self.tokens.get(day, 0) + tokens > budget:
            return False
        self.tokens[day] = self.tokens.get(day, 0) + tokens
        self.settlements[key] = (day, tokens)
        return True

    async def settle_tokens(self, key: str, spent: int) -> None:
        self._check()
        reservation = self.settlements.get(key)
        if reservation is None or key in self.settled:
            return
        day, reserved = reservation
        self.tokens[day] += spent - reserved
        self.settled.add(key)
