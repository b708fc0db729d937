"""/runs routes (to be filled by its issue)."""
from __future__ import annotations

from ..extensions import Blueprint

blp = Blueprint("runs", __name__, url_prefix="/runs")
