"""/auth routes (to be filled by its issue)."""
from __future__ import annotations

from ..extensions import Blueprint

blp = Blueprint("auth", __name__, url_prefix="/auth")
