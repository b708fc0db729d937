"""A policy table's dependency graph: the rows that move with a parent, and the references that hold rows back.

Built from the source's foreign keys (reflected by the backend: see
``SourceOps.foreign_keys``) plus the child relations a policy names:

* **children**: tables that reference a member of the object with
  ``ON DELETE CASCADE`` (deleting the parent would delete them), or that the
  policy names as children, recursively, self-references included. Their rows
  move with the parent row they belong to, in the same batch.
* **holds**: every other reference into a member (``RESTRICT``, ``NO ACTION``,
  ``SET NULL``, ``SET DEFAULT``). A member row still referenced by a row that
  does not move is left where it is, with its whole object: deleting it would
  fail or silently change live data.

A cycle of child relations between different tables (``a → b → a``) is
refused: no order of deletes can move such an object. So is a reference that
does not cascade from a member back to one of its own descendants (``orders``
→ ``order_items`` by ``ON DELETE CASCADE``, and ``orders.featured_item`` →
``order_items``): descendants are deleted first, and that one would still be
referenced, so every batch would fail.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

from .errors import InvalidPolicy
from .policy import NamedChild

CASCADE = "CASCADE"
#: The rule of a relation the policy names (moves like a cascade, whatever the database says).
NAMED = "POLICY"


@dataclass(frozen=True)
class Reference:
    """A foreign key (or a named relation): ``child(columns)`` references ``parent(parent_columns)``."""

    child: str
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]
    on_delete: str = "NO ACTION"

    @property
    def moves_child(self) -> bool:
        return self.on_delete in (CASCADE, NAMED)

    @property
    def is_self(self) -> bool:
        return self.child == self.parent

    def describe(self) -> str:
        rule = "named by the policy" if self.on_delete == NAMED else f"ON DELETE {self.on_delete}"
        return (f"{self.child}({', '.join(self.columns)}) → {self.parent}({', '.join(self.parent_columns)}) "
                f"{rule}")


@dataclass
class ObjectGraph:
    """The tables that move with ``root`` (``members``: root first, every parent before its
    children), the child relations between them, and the references that hold rows back."""

    root: str
    members: list[str]
    child_edges: list[Reference] = field(default_factory=list)
    holds: list[Reference] = field(default_factory=list)

    @property
    def is_tree(self) -> bool:
        """Each child table is reached by one relation and nothing references its own table:
        every row of an object then belongs to exactly one root."""
        return (not any(e.is_self for e in self.child_edges)
                and all(len(self.edges_into(m)) == 1 for m in self.members[1:]))

    @property
    def trivial(self) -> bool:
        """Nothing moves with the root and nothing can hold a row back."""
        return not self.child_edges and not self.holds

    def edges_into(self, table: str) -> list[Reference]:
        """Child relations whose child is ``table`` (how its rows are found)."""
        return [e for e in self.child_edges if e.child == table]

    def depth(self, table: str) -> int:
        return self.members.index(table)


def build_graph(root: str, references: Iterable[Reference], named: Iterable[NamedChild] = ()) -> ObjectGraph:
    """The object graph of ``root`` from the database's references and the policy's named children.

    A named child replaces a declared reference on the same columns (whatever its rule).
    Raises InvalidPolicy for a cycle of child relations between different tables.
    """
    named_refs = [Reference(n.table, tuple(n.columns), n.parent or root, tuple(n.references), NAMED) for n in named]
    named_keys = {(r.child, r.columns, r.parent) for r in named_refs}
    refs = [r for r in references if (r.child, r.columns, r.parent) not in named_keys] + named_refs
    members = [root]
    seen = {root}
    queue = deque([root])
    child_edges: list[Reference] = []
    while queue:
        parent = queue.popleft()
        for ref in refs:
            if ref.parent != parent or not ref.moves_child:
                continue
            child_edges.append(ref)
            if ref.child not in seen:
                seen.add(ref.child)
                members.append(ref.child)
                queue.append(ref.child)
    _refuse_cycles(child_edges, bool(named_refs))
    members = _parents_first(root, members, child_edges)
    holds = [r for r in refs if r.parent in seen and not r.moves_child]
    _refuse_back_references(members, child_edges, holds, bool(named_refs))
    return ObjectGraph(root, members, child_edges, holds)


#: Rules that leave a referencing row alone when its target goes (the delete then fails).
_BLOCKING = ("NO ACTION", "RESTRICT")


def _refuse_back_references(members: list[str], edges: list[Reference], holds: list[Reference],
                            any_named: bool) -> None:
    """Refuse a blocking reference from a member to a member deleted before it (a descendant)."""
    for hold in holds:
        if (hold.is_self or hold.child not in members or (hold.on_delete or "NO ACTION").upper() not in _BLOCKING
                or members.index(hold.parent) < members.index(hold.child)):
            continue
        path = _descent(hold.child, hold.parent, edges) or [hold.child, hold.parent]
        text = " → ".join(path + [hold.child])
        problem = (f"foreign key cycle {text}: {hold.parent} rows move with {hold.child} and are deleted first, "
                   f"but {hold.describe()} points back at them; its rows cannot be moved together")
        field_ = "children" if any_named else "table_name"
        raise InvalidPolicy({field_: [problem]}, problem)


def _descent(top: str, bottom: str, edges: list[Reference]) -> list[str] | None:
    """Tables from ``top`` down to ``bottom`` along child relations (None: not below it)."""
    queue: deque[list[str]] = deque([[top]])
    while queue:
        path = queue.popleft()
        if path[-1] == bottom:
            return path
        queue.extend(path + [e.child] for e in edges if e.parent == path[-1] and not e.is_self
                     and e.child not in path)
    return None


def _refuse_cycles(edges: list[Reference], any_named: bool) -> None:
    graph: dict[str, list[str]] = {}
    for e in edges:
        if not e.is_self:
            graph.setdefault(e.parent, []).append(e.child)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if state.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in list(graph):
        if state.get(start) is None and (cycle := visit(start)):
            field_ = "children" if any_named else "table_name"
            text = " → ".join(cycle)
            raise InvalidPolicy({field_: [f"foreign key cycle {text}: its rows cannot be moved together"]},
                                f"foreign key cycle {text}: its rows cannot be moved together")


def _parents_first(root: str, members: list[str], edges: list[Reference]) -> list[str]:
    """Members ordered so that every table comes after each of its parents (self-references aside)."""
    parents = {m: {e.parent for e in edges if e.child == m and not e.is_self} for m in members}
    ordered: list[str] = []
    placed: set[str] = set()
    while len(ordered) < len(members):
        for m in members:
            if m not in placed and parents[m] <= placed:
                ordered.append(m)
                placed.add(m)
                break
        else:  # pragma: no cover - cycles were refused above
            raise AssertionError("cycle")
    assert ordered[0] == root
    return ordered


__all__ = ["CASCADE", "NAMED", "ObjectGraph", "Reference", "build_graph"]
