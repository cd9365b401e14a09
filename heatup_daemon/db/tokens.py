"""The LLM token ledger: what every node's plans spent per UTC day, and each plan's
reservation until it is settled (``stores.TokenLedger``)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from heatup_daemon.db.base import SqlStore
from heatup_daemon.db.models import TokenSettlementRow, TokenUsageRow


class TokenSql(SqlStore):
    async def tokens_spent(self, day: date) -> int:
        query = select(TokenUsageRow.tokens).where(TokenUsageRow.day == day)
        spent: int | None = await self._read(lambda db: db.scalar(query))
        return int(spent or 0)

    async def reserve_tokens(self, key: str, day: date, tokens: int, budget: int) -> bool:
        if tokens > budget:
            return False
        insert = self.insert(TokenUsageRow).values(day=day, tokens=tokens)
        reserve = insert.on_conflict_do_update(
            index_elements=[TokenUsageRow.day],
            set_={"tokens": TokenUsageRow.tokens + insert.excluded.tokens},
            # The conflict's row is locked while this decides: no two nodes both fit.
            where=TokenUsageRow.tokens + insert.excluded.tokens <= budget,
        ).returning(TokenUsageRow.tokens)
        record = self.insert(TokenSettlementRow).values(key=key, day=day, reserved=tokens)

        def write(db: Connection) -> bool:
            if db.scalar(reserve) is None:
                return False
            db.execute(record)
            return True

        return await self._write(write)

    async def settle_tokens(self, key: str, spent: int) -> None:
        settle = (
            update(TokenSettlementRow)
            .where(TokenSettlementRow.key == key, TokenSettlementRow.settled.is_(False))
            .values(settled=True)
            .returning(TokenSettlementRow.day, TokenSettlementRow.reserved)
        )

        def write(db: Connection) -> None:
            reservation = db.execute(settle).one_or_none()
            if reservation is None:  # settled already, or never reserved
                return
            db.execute(
                update(TokenUsageRow)
                .where(TokenUsageRow.day == reservation.day)
                .values(tokens=TokenUsageRow.tokens + (spent - reservation.reserved))
            )

        await self._write(write)
