"""/config routes (to be filled by its issue)."""
from __future__ import annotations

from ..extensions import Blueprint

blp = Blueprint("config", __name__, url_prefix="/config")
