"""Property tests: any text yields a compiled condition or a CriteriaError, nothing else."""
from __future__ import annotations

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from archiver.engine.criteria import CriteriaError, compile_criteria

TABLE = sa.Table(
    "orders",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(20)),
    sa.Column("amount", sa.Numeric(10, 2)),
    sa.Column("note", sa.Text),
    sa.Column("flag", sa.Boolean),
    sa.Column("created_at", sa.DateTime),
    sa.Column("data", sa.JSON),
    sa.Column("Mixed", sa.Integer),
    sa.Column("mixed", sa.Integer),
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = [
    # columns: real, other-case, quoted, qualified, foreign
    "id", "status", "STATUS", "amount", "note", "flag", "created_at", "data", "mixed", '"Mixed"', '"status"',
    "orders.id", '"orders"."status"', "users.password_hash", "other.id", "public.orders.id", "foo", "$1",
    # literals
    "'x'", "'it''s'", "'%'", "'a%b_'", "''", "1", "-1", "0", "1.5", "1e3", ".5", "99999999999999999999",
    "TRUE", "FALSE", "NULL", "'2024-01-01'", "'2024-13-45'", "N'x'", "DATE '2020-01-01'",
    # operators and keywords
    "=", "<>", "!=", "<", "<=", ">", ">=", "==", "AND", "OR", "NOT", "IN", "BETWEEN", "LIKE", "ILIKE",
    "ESCAPE", "'!'", "IS", "IS NOT", "+", "-", "*", "/", "%", "||", "&", "|", "^", "~", "::", "::int",
    "SELECT", "FROM", "WHERE", "UNION", "EXISTS", "CAST", "AS", "CASE", "WHEN", "THEN", "END",
    "INTERVAL", "COLLATE", "DISTINCT", "XOR", "ANY", "ALL", "SIMILAR TO", "GLOB", "DROP TABLE users",
    "sleep(10)", "pg_sleep(1)", "lower(status)", "upper(", "count(*)", "now()", "CURRENT_TIMESTAMP",
    # punctuation, quoting, comments, placeholders
    "(", ")", "((", "))", ",", ".", ";", "'", '"', "`", "[", "]", "{", "}", "--", "/*", "*/", "#",
    "?", ":x", "%s", "%(x)s", "@x", "@@x", "$$", "\\", "\n", "\t", "\x00", "\u00a0", "\u202e", "é",
]

token_soup = st.lists(st.sampled_from(TOKENS), max_size=40).flatmap(
    lambda parts: st.sampled_from([" ", ""]).map(lambda sep: sep.join(parts))
)

# The same without the characters the pre-scan rejects, so sqlglot and the compiler see more.
_PRESCAN_REJECTS = set(";*/#?:$@%`[]{}&|^~\\\x00\u00a0\u202e")
CLEAN_TOKENS = [t for t in TOKENS if not set(t) & _PRESCAN_REJECTS and "--" not in t]
clean_soup = st.lists(st.sampled_from(CLEAN_TOKENS), max_size=25).map(" ".join)

# Syntactically valid criteria built from the grammar (they should nearly always compile).
columns = st.sampled_from(["id", "amount", "orders.id", '"amount"', "ID"])
numbers = st.one_of(st.integers(-(2**63), 2**63 - 1).map(str), st.decimals(
    min_value=-10**9, max_value=10**9, places=3, allow_nan=False, allow_infinity=False).map(str))
strings = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=20).map(
    lambda s: "'" + s.replace("'", "''") + "'")
atoms = st.one_of(
    st.tuples(columns, st.sampled_from(["=", "<>", "!=", "<", "<=", ">", ">="]), numbers).map(" ".join),
    st.tuples(st.sampled_from(["status", "note"]), st.sampled_from(["=", "<>", "LIKE", "NOT LIKE"]), strings)
    .map(" ".join),
    st.lists(numbers, min_size=1, max_size=5).map(lambda xs: f"id IN ({', '.join(xs)})"),
    st.tuples(numbers, numbers).map(lambda ab: f"amount BETWEEN {ab[0]} AND {ab[1]}"),
    st.sampled_from(["note IS NULL", "data IS NOT NULL", "flag = TRUE", "flag <> FALSE", "id = amount",
                     "created_at < '2024-01-01'", "NOT status = 'x'"]),
)
conditions = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR", "and", "or"]), inner).map(" ".join),
        inner.map(lambda c: f"NOT ({c})"),
        inner.map(lambda c: f"({c})"),
    ),
    max_leaves=12,
)



def _insert(args: tuple[str, list[tuple[int, str]]]) -> str:
    text, edits = args
    for position, token in edits:
        cut = position % (len(text) + 1)
        text = text[:cut] + token + text[cut:]
    return text


# Well-formed conditions with a few tokens spliced in at random places.
mutated = st.tuples(conditions, st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(TOKENS)),
                                         min_size=1, max_size=3)).map(_insert)


def check(text: str) -> sa.ColumnElement | None:
    """The property: a ColumnElement (None for blank text) or a CriteriaError."""
    try:
        result = compile_criteria(text, TABLE)
    except CriteriaError as err:
        message = str(err)
        assert message and len(message) <= 120
        return None
    if result is None:
        assert not text.strip()
        return None
    assert isinstance(result, sa.ColumnElement)
    # It must also render on real dialects, with no quote characters from the text.
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        rendered = str(result.compile(dialect=dialect))
        assert "'" not in rendered and ";" not in rendered and "--" not in rendered
    return result


@SETTINGS
@given(st.text(max_size=300))
def test_random_text_compiles_or_raises_criteria_error(text):
    check(text)


@SETTINGS
@given(token_soup)
def test_token_soup_compiles_or_raises_criteria_error(text):
    check(text)


@SETTINGS
@given(clean_soup)
def test_clean_token_soup_compiles_or_raises_criteria_error(text):
    check(text)


@SETTINGS
@given(mutated)
def test_mutated_conditions_compile_or_raise_criteria_error(text):
    check(text)


@SETTINGS
@given(conditions)
def test_grammar_conditions_compile(text):
    try:
        result = compile_criteria(text, TABLE)
    except CriteriaError as err:  # only limits may reject a well-formed condition
        assert "too deeply nested" in str(err) or "too long" in str(err), (text, str(err))
        return
    assert isinstance(result, sa.ColumnElement)
    str(result.compile(dialect=postgresql.dialect()))
