"""The daemon's HTTP surface: the API (``routes``), the original service's answers
(``seed``), who may use it (``auth``)."""

from __future__ import annotations

from heatup_daemon.api.routes import ApiState, create_app

__all__ = ["ApiState", "create_app"]
