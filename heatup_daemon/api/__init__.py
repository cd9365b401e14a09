"""The daemon's HTTP surface: the API (``routes``), the original service's answers
(``compat``), the web console (``console``), who may use them (``auth``) and what they share
(``state``)."""

from __future__ import annotations

from heatup_daemon.api.routes import create_app
from heatup_daemon.api.state import ApiState

__all__ = ["ApiState", "create_app"]
