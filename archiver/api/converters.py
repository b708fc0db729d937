"""URL converters of the API's routes."""
from __future__ import annotations

from werkzeug.routing import IntegerConverter, Map

from ..models import MAX_ID


class IdConverter(IntegerConverter):
    """``<id:name>``: a row id, ASCII digits, 1..MAX_ID.

    Anything else matches no route (a JSON 404), so an out-of-range number
    never reaches a query (SQLite raises OverflowError past 2**63 - 1).
    flask-smorest documents it as an integer with these bounds.
    """

    regex = r"[0-9]+"  # not \d: that also matches other scripts' digits, which int() accepts

    def __init__(self, map: Map, min: int = 1, max: int = MAX_ID) -> None:  # noqa: A002 (werkzeug's names)
        super().__init__(map, min=min, max=max)
