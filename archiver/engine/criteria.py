"""Safe custom criteria: a small SQL boolean language compiled to bound SQLAlchemy.

``compile_criteria(text, table)`` turns a policy's ``custom_criteria`` such as
``status = 'closed' AND amount < 100`` into a SQLAlchemy expression over
``table``'s own columns, with every literal as a bound parameter: no text from
the request ever reaches SQL as text. Anything outside the allow-list raises
:class:`CriteriaError`, whose message is short, safe to show and says what is
not allowed.

Grammar (standard SQL syntax; keywords are case-insensitive)::

    condition  := condition AND condition | condition OR condition
                | NOT condition | ( condition ) | predicate
    predicate  := operand op operand            op: = <> != < <= > >=
                | column [NOT] IN ( literal, ... )           (1..1000 items)
                | column [NOT] BETWEEN operand AND operand
                | column [NOT] LIKE 'pattern' [ESCAPE 'c']   (ILIKE too)
                | column IS [NOT] NULL
    operand    := column | literal
    column     := name | table_name.name | "Quoted Name"
    literal    := 'string' ('' escapes a quote) | number | -number | TRUE | FALSE

Decisions:

* Columns: only the table's own. Unquoted names match case-insensitively, but
  only if exactly one column matches (otherwise "ambiguous column": quote it);
  double-quoted names must match exactly. A qualifier must be the table's own
  name (same rule); schema/catalog qualifiers are rejected.
* Comparing two columns of the table is allowed (harmless); every comparison
  needs at least one column. A bare column or literal is not a condition.
* NULL only in ``IS [NOT] NULL``. No function calls at all (not even
  ``lower``), no casts, no arithmetic, no bitwise or ``||`` operators, no
  subqueries, no ``*``, no placeholders or variables, no comments, no ``;``.
* Literals are checked against the column type: numbers for numeric columns
  (TRUE/FALSE also mean 1/0 for integer columns, as MySQL booleans are
  TINYINT), TRUE/FALSE for booleans, strings for text, ISO 8601 strings for
  date/time columns (converted to date/datetime/time), UUID text for UUIDs,
  an enum's own values for enums. JSON/binary/array columns allow only
  ``IS [NOT] NULL``.
* Limits: 2000 characters and nesting depth 25 (parentheses plus stacked
  NOT/unary signs), both checked by a character scan before parsing, because
  sqlglot's recursive-descent parser spends ~20 Python frames per level.
"""
from __future__ import annotations

import operator
import re
import threading
import unicodedata
import uuid
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

# sqlglot is imported on first use (a policy without criteria never loads it: the CLI starts faster);
# these names are bound by _load_sqlglot() before any code below reads them.
sqlglot: Any = None
exp: Any = None
ParseError: Any = None
SqlglotError: Any = None


_loading = threading.Lock()


def _load_sqlglot() -> None:
    global sqlglot, exp, ParseError, SqlglotError
    if sqlglot is not None:
        return
    with _loading:
        if sqlglot is not None:
            return
        import sqlglot as parser_module
        from sqlglot import errors, expressions

        exp, ParseError, SqlglotError = expressions, errors.ParseError, errors.SqlglotError
        _node_tables()
        sqlglot = parser_module  # last: the other threads wait for the tables above

MAX_LENGTH = 2000
MAX_DEPTH = 25
MAX_IN_ITEMS = 1000
_MAX_WALK_DEPTH = 4 * MAX_DEPTH + 20  # AST depth guard, far above what the scan admits
_SNIP = 40
_INT64 = (-(2**63), 2**63 - 1)
_INT_RE = re.compile(r"[0-9]+\Z")
_DEC_RE = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_ESCAPE_CHARS = frozenset("!#^~=")


class CriteriaError(ValueError):
    """The expression is not allowed; the message says why (safe to show)."""


def compile_criteria(text: str | None, table: sa.Table) -> ColumnElement[bool] | None:
    """Compile ``text`` to a bound boolean expression over ``table``; None if empty."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise CriteriaError("custom_criteria must be a string")
    if not text.strip():
        return None
    _prescan(text)
    _load_sqlglot()
    tree = _parse(text)
    return _Compiler(table).condition(tree, 0)


def validate_criteria(text: str | None, table: sa.Table) -> None:
    """Raise :class:`CriteriaError` if ``text`` is not a valid criteria for ``table``."""
    compile_criteria(text, table)


# --------------------------------------------------------------------------- helpers

def _snip(value: object, limit: int = _SNIP) -> str:
    """User text for a message: one line, at most ``limit`` characters."""
    s = " ".join(str(value).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


_CHAR_MESSAGES: dict[str, str] = {
    ";": "only one expression is allowed (found ';')",
    "*": "'*' is not allowed",
    "/": "arithmetic is not allowed (found '/')",
    "#": "comments are not allowed (found '#')",
    "?": "placeholders are not allowed (found '?')",
    ":": "placeholders are not allowed (found ':')",
    "$": "placeholders and variables are not allowed (found '$')",
    "@": "variables are not allowed (found '@')",
    "%": "'%' is only allowed inside a string (no placeholders, no modulo)",
    "`": "backtick quoting is not allowed; quote names with double quotes",
    "[": "brackets are not allowed; quote names with double quotes",
    "]": "brackets are not allowed; quote names with double quotes",
    "{": "braces are not allowed",
    "}": "braces are not allowed",
    "&": "bitwise operators are not allowed (found '&')",
    "|": "bitwise operators are not allowed (found '|')",
    "^": "bitwise operators are not allowed (found '^')",
    "~": "bitwise operators are not allowed (found '~')",
    "\\": "backslashes are only allowed inside strings",
}
_TWO_CHAR_MESSAGES: dict[str, str] = {
    "--": "comments are not allowed (found '--')",
    "/*": "comments are not allowed (found '/*')",
    "::": "casts are not allowed (found '::')",
    "||": "the || operator is not allowed",
}


def _prescan(text: str) -> None:
    """Cheap linear checks before sqlglot sees the text: size, characters, nesting."""
    if len(text) > MAX_LENGTH:
        raise CriteriaError(f"custom_criteria is too long (max {MAX_LENGTH} characters)")
    for ch in text:
        if ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cs"):
            raise CriteriaError("control characters are not allowed")
    n = len(text)
    pending = [0]  # stacked prefix operators (NOT, unary sign) per open parenthesis
    depth = 0  # open parentheses + all pending prefix operators
    i = 0
    while i < n:
        ch = text[i]
        if ch in "'\"":
            j = i + 1
            while True:
                k = text.find(ch, j)
                if k < 0:
                    kind = "string" if ch == "'" else "quoted name"
                    raise CriteriaError(f"unterminated {kind} (missing closing {ch})")
                if k + 1 < n and text[k + 1] == ch:  # doubled quote = escaped quote
                    j = k + 2
                    continue
                break
            i = k + 1
            continue
        if ch in " \t\r\n":
            i += 1
            continue
        if ch.isalnum() or ch == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j].upper()
            if word == "NOT":
                pending[-1] += 1
                depth += 1
            elif word in ("AND", "OR"):
                depth -= pending[-1]
                pending[-1] = 0
            i = j
        else:
            two = text[i : i + 2]
            if two in _TWO_CHAR_MESSAGES:
                raise CriteriaError(_TWO_CHAR_MESSAGES[two])
            if ch in _CHAR_MESSAGES:
                raise CriteriaError(_CHAR_MESSAGES[ch])
            if ch == "(":
                pending.append(0)
                depth += 1
            elif ch == ")":
                if len(pending) == 1:
                    raise CriteriaError("unbalanced parentheses")
                depth -= 1 + pending.pop()
            elif ch == ",":
                depth -= pending[-1]
                pending[-1] = 0
            elif ch in "-+":
                pending[-1] += 1
                depth += 1
            elif ch not in "=<>!.":
                raise CriteriaError(f"character not allowed: {ch!r}")
            i += 1
        if depth > MAX_DEPTH:
            raise CriteriaError(f"expression is too deeply nested (max {MAX_DEPTH} levels)")
    if len(pending) != 1:
        raise CriteriaError("unbalanced parentheses")


def _parse(text: str) -> exp.Expr:
    try:
        tree = sqlglot.parse_one(text, into=exp.Condition)
    except ParseError as err:
        near = ""
        for detail in err.errors:
            if detail.get("highlight"):
                near = _snip(detail["highlight"], 30)
                break
        keyword = near.upper()
        if keyword in ("UNION", "INTERSECT", "EXCEPT", "MINUS"):
            raise CriteriaError(f"{keyword} is not allowed") from None
        if keyword in ("SELECT", "FROM", "WITH", "VALUES"):
            raise CriteriaError("subqueries are not allowed") from None
        raise CriteriaError(f"syntax error near '{near}'" if near else "syntax error") from None
    except RecursionError:
        raise CriteriaError(f"expression is too deeply nested (max {MAX_DEPTH} levels)") from None
    except SqlglotError:
        raise CriteriaError("syntax error") from None
    except Exception:  # a parser bug on odd input must still be a clean rejection
        raise CriteriaError("could not parse the expression") from None
    if tree is None:
        raise CriteriaError("syntax error")
    for node in tree.walk():
        if getattr(node, "comments", None):
            raise CriteriaError("comments are not allowed")
    return tree


# --------------------------------------------------------------------------- compiler

_COMPARISONS: dict[type, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {}
_FORBIDDEN: list[tuple[tuple[type, ...], str]] = []


def _node_tables() -> None:
    """The node tables below, built from sqlglot's classes once it is loaded."""
    comparisons: dict[type, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
        # node class -> (operator, operator with the sides swapped)
        exp.EQ: (operator.eq, operator.eq),
        exp.NEQ: (operator.ne, operator.ne),
        exp.LT: (operator.lt, operator.gt),
        exp.LTE: (operator.le, operator.ge),
        exp.GT: (operator.gt, operator.lt),
        exp.GTE: (operator.ge, operator.le),
    }

    forbidden: list[tuple[tuple[type, ...], str]] = [
        ((exp.Select, exp.Subquery, exp.Exists, exp.Any, exp.All), "subqueries are not allowed"),
        ((exp.SetOperation,), "UNION/INTERSECT/EXCEPT are not allowed"),
        ((exp.Cast,), "casts are not allowed"),
        ((exp.Placeholder, exp.Parameter, exp.SessionParameter), "placeholders and variables are not allowed"),
        ((exp.Star,), "'*' is not allowed"),
        ((exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.IntDiv, exp.Pow), "arithmetic is not allowed"),
        ((exp.BitwiseAnd, exp.BitwiseOr, exp.BitwiseXor, exp.BitwiseNot, exp.BitwiseLeftShift,
          exp.BitwiseRightShift), "bitwise operators are not allowed"),
        ((exp.DPipe,), "the || operator is not allowed"),
        ((exp.NullSafeEQ, exp.NullSafeNEQ), "IS [NOT] DISTINCT FROM is not allowed"),
        ((exp.SimilarTo,), "SIMILAR TO is not allowed"),
        ((exp.Glob,), "GLOB is not allowed"),
        ((exp.RegexpLike,), "regular expressions are not allowed"),
        ((exp.Xor,), "XOR is not allowed"),
        ((exp.Case,), "CASE expressions are not allowed"),
        ((exp.Interval,), "INTERVAL is not allowed"),
        ((exp.Collate,), "COLLATE is not allowed"),
        ((exp.Array,), "arrays are not allowed"),
        ((exp.Dot,), "only column or table.column names are allowed"),
        ((exp.National, exp.RawString, exp.HexString, exp.ByteString, exp.BitString, exp.UnicodeString),
         "only plain 'quoted' string literals are allowed"),
    ]
    _COMPARISONS.update(comparisons)
    _FORBIDDEN.extend(forbidden)

def _category(column: sa.Column) -> str:
    """What literals a column takes, from its reflected type's Python type ("any" if unknown)."""
    try:
        py = column.type.python_type
    except NotImplementedError:
        return "any"
    if py is bool:
        return "bool"
    if issubclass(py, (int, float, Decimal)):
        return "number"
    if issubclass(py, str):
        return "string"
    if issubclass(py, datetime):
        return "datetime"
    if issubclass(py, date):
        return "date"
    if issubclass(py, time):
        return "time"
    if issubclass(py, uuid.UUID):
        return "uuid"
    return "other"


def _is_integer(column: sa.Column) -> bool:
    try:
        return issubclass(column.type.python_type, int)
    except NotImplementedError:
        return False


def _group(category: str) -> str:
    return "temporal" if category in ("datetime", "date") else category


def _unwrap(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _forbidden(node: exp.Expr) -> CriteriaError:
    if isinstance(node, exp.Cast) and type(_unwrap(node.this)) is exp.Literal:
        return CriteriaError("typed literals and casts are not allowed; write a plain 'string'")
    for classes, message in _FORBIDDEN:
        if isinstance(node, classes):
            return CriteriaError(message)
    if isinstance(node, exp.Func):
        name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
        return CriteriaError(f"function calls are not allowed: {_snip(str(name).upper(), 30)}")
    return CriteriaError(f"not allowed in custom criteria: {_snip(node.key.upper(), 30)}")


def _not_a_condition(what: str) -> CriteriaError:
    return CriteriaError(f"expected a condition such as status = 'x', found {what}")


class _Literal:
    """A checked literal value (Python-typed), not yet coerced to a column."""

    __slots__ = ("value", "kind")

    def __init__(self, value: Any, kind: str) -> None:
        self.value = value
        self.kind = kind  # "string" | "number" | "bool"


class _Compiler:
    def __init__(self, table: sa.Table) -> None:
        self.table = table
        self.by_name = {c.name: c for c in table.columns}
        self.by_fold: dict[str, list[sa.Column]] = {}
        for c in table.columns:
            self.by_fold.setdefault(c.name.casefold(), []).append(c)

    # -- conditions ---------------------------------------------------------
    def condition(self, node: exp.Expr, depth: int) -> ColumnElement[bool]:
        if depth > _MAX_WALK_DEPTH:
            raise CriteriaError(f"expression is too deeply nested (max {MAX_DEPTH} levels)")
        node = _unwrap(node)
        if isinstance(node, (exp.And, exp.Or)):
            parts = [self.condition(part, depth + 1) for part in self._flatten(node)]
            return sa.and_(*parts) if isinstance(node, exp.And) else sa.or_(*parts)
        if isinstance(node, exp.Not):
            inner = _unwrap(node.this)
            if isinstance(inner, exp.Is) and not inner.args.get("negate"):
                return self._is(inner, negate=True)
            return sa.not_(self.condition(inner, depth + 1))
        if type(node) in _COMPARISONS:
            return self._comparison(node)
        if isinstance(node, exp.In):
            return self._in(node)
        if isinstance(node, exp.Between):
            return self._between(node)
        if isinstance(node, (exp.Like, exp.ILike)):
            return self._like(node, None)
        if isinstance(node, exp.Escape):
            return self._escape(node)
        if isinstance(node, exp.Is):
            return self._is(node, negate=bool(node.args.get("negate")))
        if isinstance(node, exp.Column):
            raise _not_a_condition(f"column {_snip(self._column_label(node), 30)}")
        if type(node) is exp.Literal or isinstance(node, (exp.Boolean, exp.Null, exp.Neg)):
            raise _not_a_condition("a literal")
        raise _forbidden(node)

    @staticmethod
    def _flatten(node: exp.Expr) -> list[exp.Expr]:
        """Operands of a chain of the same AND/OR (iterative: long chains are left-deep)."""
        kind = type(node)
        out: list[exp.Expr] = []
        stack = [node]
        while stack:
            current = _unwrap(stack.pop())
            if type(current) is kind:
                stack.append(current.expression)
                stack.append(current.this)
            else:
                out.append(current)
        return out

    def _comparison(self, node: exp.Expr) -> ColumnElement[bool]:
        op, swapped = _COMPARISONS[type(node)]
        left, right = self.operand(node.this), self.operand(node.expression)
        if isinstance(left, _Literal) and isinstance(right, _Literal):
            raise CriteriaError("a comparison needs a column on at least one side")
        if isinstance(left, _Literal):
            left, right, op = right, left, swapped
        assert isinstance(left, sa.Column)
        if isinstance(right, sa.Column):
            self._check_comparable(left, right)
            return op(left, right)
        return op(left, self._bind(left, right))

    def _in(self, node: exp.In) -> ColumnElement[bool]:
        if node.args.get("query") is not None:
            raise CriteriaError("subqueries are not allowed")
        if node.args.get("unnest") is not None or node.args.get("field") is not None:
            raise CriteriaError("IN needs a list of literal values")
        column = self._column_operand(node.this, "IN")
        items = node.expressions or []
        if not items:
            raise CriteriaError("IN needs at least one value")
        if len(items) > MAX_IN_ITEMS:
            raise CriteriaError(f"IN allows at most {MAX_IN_ITEMS} values")
        values = []
        for item in items:
            value = self.operand(item)
            if not isinstance(value, _Literal):
                raise CriteriaError("IN needs a list of literal values")
            values.append(self._bind(column, value))
        return column.in_(values)

    def _between(self, node: exp.Between) -> ColumnElement[bool]:
        if node.args.get("symmetric"):
            raise CriteriaError("BETWEEN SYMMETRIC is not allowed")
        column = self._column_operand(node.this, "BETWEEN")
        bounds = []
        for bound in (node.args.get("low"), node.args.get("high")):
            if bound is None:
                raise CriteriaError("syntax error")
            value = self.operand(bound)
            if isinstance(value, sa.Column):
                self._check_comparable(column, value)
                bounds.append(value)
            else:
                bounds.append(self._bind(column, value))
        return column.between(bounds[0], bounds[1])

    def _escape(self, node: exp.Escape) -> ColumnElement[bool]:
        like = _unwrap(node.this)
        if not isinstance(like, (exp.Like, exp.ILike)):
            raise CriteriaError("ESCAPE is only allowed after LIKE")
        esc = self.operand(node.expression)
        if not (isinstance(esc, _Literal) and esc.kind == "string" and esc.value in _ESCAPE_CHARS):
            raise CriteriaError("ESCAPE must be one of '!', '#', '^', '~', '='")
        return self._like(like, esc.value)

    def _like(self, node: exp.Expr, escape: str | None) -> ColumnElement[bool]:
        keyword = "ILIKE" if isinstance(node, exp.ILike) else "LIKE"
        column = self._column_operand(node.this, keyword)
        if _category(column) not in ("string", "any") or isinstance(column.type, sa.Enum):
            raise CriteriaError(f"{keyword} needs a text column: {_snip(column.name, 30)}")
        pattern = self.operand(node.expression)
        if not (isinstance(pattern, _Literal) and pattern.kind == "string"):
            raise CriteriaError(f"{keyword} needs a 'quoted' pattern")
        bound = self._bind(column, pattern)
        negate = bool(node.args.get("negate"))
        if keyword == "ILIKE":
            return column.not_ilike(bound, escape=escape) if negate else column.ilike(bound, escape=escape)
        return column.not_like(bound, escape=escape) if negate else column.like(bound, escape=escape)

    def _is(self, node: exp.Is, negate: bool) -> ColumnElement[bool]:
        if not isinstance(_unwrap(node.expression), exp.Null):
            raise CriteriaError("only IS NULL and IS NOT NULL are allowed")
        column = self._column_operand(node.this, "IS NULL")
        return column.is_not(None) if negate else column.is_(None)

    # -- operands -----------------------------------------------------------
    def operand(self, node: exp.Expr | None) -> sa.Column | _Literal:
        if node is None:
            raise CriteriaError("syntax error")
        node = _unwrap(node)
        if isinstance(node, exp.Column):
            return self.column(node)
        if isinstance(node, exp.Null):
            raise CriteriaError("NULL can only be used as IS NULL or IS NOT NULL")
        if isinstance(node, exp.Boolean):
            return _Literal(bool(node.this), "bool")
        if type(node) is exp.Literal:
            if node.is_string:
                return _Literal(node.this, "string")
            return _Literal(_number(node.this, negative=False), "number")
        if isinstance(node, exp.Neg):
            inner = _unwrap(node.this)
            if type(inner) is exp.Literal and not inner.is_string:
                return _Literal(_number(inner.this, negative=True), "number")
            raise CriteriaError("unary minus is only allowed before a number")
        if type(node) in _COMPARISONS or isinstance(
            node, (exp.And, exp.Or, exp.Not, exp.In, exp.Between, exp.Like, exp.ILike, exp.Is, exp.Escape)
        ):
            raise CriteriaError("a comparison operand must be a column or a literal")
        raise _forbidden(node)

    def _column_operand(self, node: exp.Expr | None, keyword: str) -> sa.Column:
        value = self.operand(node)
        if not isinstance(value, sa.Column):
            raise CriteriaError(f"{keyword} needs a column on its left side")
        return value

    @staticmethod
    def _column_label(node: exp.Column) -> str:
        parts = [node.args.get(k) for k in ("catalog", "db", "table")] + [node.this]
        return ".".join(p.name for p in parts if isinstance(p, exp.Expr))

    def column(self, node: exp.Column) -> sa.Column:
        ident = node.this
        if not isinstance(ident, exp.Identifier):
            raise _forbidden(ident) if isinstance(ident, exp.Expr) else CriteriaError("syntax error")
        if node.args.get("db") is not None or node.args.get("catalog") is not None:
            raise CriteriaError(f"columns of other tables are not allowed: {_snip(self._column_label(node))}")
        qualifier = node.args.get("table")
        if qualifier is not None:
            if not isinstance(qualifier, exp.Identifier) or not self._matches_table(qualifier):
                raise CriteriaError(
                    f"columns of other tables are not allowed: {_snip(self._column_label(node))}"
                )
        name = ident.name
        if ident.args.get("quoted"):
            found = self.by_name.get(name)
            if found is None:
                raise CriteriaError(f"unknown column: {_snip(name)}")
            return found
        matches = self.by_fold.get(name.casefold(), [])
        if not matches:
            raise CriteriaError(f"unknown column: {_snip(name)}")
        if len(matches) > 1:
            raise CriteriaError(f"ambiguous column: {_snip(name)} (use the exact name in double quotes)")
        return matches[0]

    def _matches_table(self, ident: exp.Identifier) -> bool:
        if ident.args.get("quoted"):
            return ident.name == self.table.name
        return ident.name.casefold() == self.table.name.casefold()

    # -- typing -------------------------------------------------------------
    @staticmethod
    def _check_comparable(a: sa.Column, b: sa.Column) -> None:
        ca, cb = _category(a), _category(b)
        if "other" in (ca, cb):
            col = a if ca == "other" else b
            raise CriteriaError(f"column {_snip(col.name, 30)} can only be used with IS [NOT] NULL")
        if "any" not in (ca, cb) and _group(ca) != _group(cb):
            raise CriteriaError(
                f"cannot compare {_snip(a.name, 25)} ({_group(ca)}) with {_snip(b.name, 25)} ({_group(cb)})"
            )

    @staticmethod
    def _bind(column: sa.Column, literal: _Literal) -> sa.BindParameter[Any]:
        """The literal, checked and converted for ``column``, as an anonymous bound parameter."""
        value = _coerce(column, literal)
        return sa.bindparam(None, value, type_=column.type.coerce_compared_value(operator.eq, value))


def _number(text: str, negative: bool) -> int | Decimal:
    if len(text) > 40:
        raise CriteriaError("number is too long")
    if _INT_RE.match(text):
        value = -int(text) if negative else int(text)
        if not _INT64[0] <= value <= _INT64[1]:
            raise CriteriaError("number is out of range")
        return value
    if not _DEC_RE.match(text):
        raise CriteriaError(f"invalid number: {_snip(text, 30)}")
    try:
        dec = Decimal(text)
    except InvalidOperation:
        raise CriteriaError(f"invalid number: {_snip(text, 30)}") from None
    if not dec.is_finite() or (dec != 0 and abs(dec.adjusted()) > 38):
        raise CriteriaError("number is out of range")
    return -dec if negative else dec


_EXPECTS = {
    "bool": "TRUE or FALSE",
    "number": "a number",
    "string": "a 'quoted' string",
    "datetime": "an ISO date/time string such as '2024-01-31 12:00:00'",
    "date": "an ISO date string such as '2024-01-31'",
    "time": "an ISO time string such as '12:30:00'",
    "uuid": "a UUID string",
}


def _coerce(column: sa.Column, literal: _Literal) -> Any:
    """``literal``'s value as the Python type ``column`` holds, or CriteriaError."""
    category = _category(column)
    name = _snip(column.name, 30)
    if category == "any":
        return literal.value
    if category == "other":
        raise CriteriaError(f"column {name} can only be used with IS [NOT] NULL")
    expects = f"column {name} expects {_EXPECTS[category]}"
    if category == "bool":
        if literal.kind != "bool":
            raise CriteriaError(expects)
        return literal.value
    if category == "number":
        if literal.kind == "bool" and _is_integer(column):
            return int(literal.value)  # MySQL's BOOLEAN is TINYINT(1): TRUE/FALSE mean 1/0
        if literal.kind != "number":
            raise CriteriaError(expects)
        return literal.value
    if literal.kind != "string":
        raise CriteriaError(expects)
    text = literal.value
    if category == "string":
        enums = getattr(column.type, "enums", None) if isinstance(column.type, sa.Enum) else None
        if enums and text not in enums:
            raise CriteriaError(f"column {name} has no such value (not one of its enum values)")
        return text
    try:
        if category == "datetime":
            return datetime.fromisoformat(text.strip())
        if category == "date":
            return date.fromisoformat(text.strip())
        if category == "time":
            return time.fromisoformat(text.strip())
        return uuid.UUID(text.strip())
    except (ValueError, TypeError):
        raise CriteriaError(expects) from None
