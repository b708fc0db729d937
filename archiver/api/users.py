"""/users routes (to be filled by its issue)."""
from __future__ import annotations

from ..extensions import Blueprint

blp = Blueprint("users", __name__, url_prefix="/users")
