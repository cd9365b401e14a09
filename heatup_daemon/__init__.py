"""heatup: keeps registered Telegram sessions active on a jittered schedule."""

from __future__ import annotations

__version__ = "0.1.0"
