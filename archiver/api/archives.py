"""/archives routes (to be filled by its issue)."""
from __future__ import annotations

from ..extensions import Blueprint

blp = Blueprint("archives", __name__, url_prefix="/archives")
