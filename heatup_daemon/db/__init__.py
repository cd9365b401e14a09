"""The database: models, engines, migrations and the repository (the only code that opens
a database session)."""

from __future__ import annotations
