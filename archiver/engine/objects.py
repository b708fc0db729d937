"""One batch of root rows as whole objects: their descendants, locked, and the rows references hold back.

Given a batch of locked root rows (the policy table's), :func:`collect`
finds, in the same source transaction:

1. every descendant row — rows of child tables (``ON DELETE CASCADE`` or named
   by the policy) that reference a row of the object, any depth, self-references
   included — one SELECT … FOR UPDATE per child relation per level, never per row;
2. the rows that references hold back: a member row referenced (``RESTRICT``,
   ``NO ACTION``, ``SET NULL``, ``SET DEFAULT``) by a row that does not move. Its
   object's root, and so the whole object, stays in the source; the walk goes on
   past it (the next run tries it again).

The result says which roots move, which descendants move with them (each with
the root it is archived under and its depth), and why the others stay. A row a
concurrent transaction tries to attach to a locked row waits for the batch and
then fails on its foreign key (the parent is gone), or was committed before the
lock and is collected here: it is never lost.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .plan import MemberTable, TablePlan
from .rowcodec import canonical_pk

if TYPE_CHECKING:  # pragma: no cover
    from .backends.base import SourceOps


class _Row:
    """A collected row: its key, the selected row (None for a root: its record is the batch's),
    its depth, and the root it belongs to (a tree-shaped object) or the rows it references."""

    __slots__ = ("key", "row", "level", "owner", "parents")

    def __init__(self, key: tuple, row: Any | None, level: int, owner: tuple | None = None) -> None:
        self.key, self.row, self.level, self.owner = key, row, level, owner
        self.parents: set[tuple[str, tuple]] = set()


@dataclass
class ObjectBatch:
    """What moves of one batch: roots, their descendants by table, and the roots held back.

    ``children[table]`` holds ``(key, record, root_key, level)`` for each moving
    descendant, in the order its table's rows are to be archived; ``held``
    maps each root key that stays to the reference that holds it.
    """

    roots: list[tuple]
    children: dict[str, list[tuple[tuple, dict[str, Any], tuple, int]]]
    held: dict[tuple, str]

    @property
    def child_rows(self) -> int:
        return sum(len(rows) for rows in self.children.values())


def collect(conn: sa.Connection, sops: "SourceOps", plan: TablePlan, root_keys: list[tuple],
            root_dates: dict[tuple, Any]) -> ObjectBatch:
    """The objects of these locked root rows (see the module docstring)."""
    graph = plan.graph
    # A tree (each child table reached by one relation, no self-reference): every row belongs to
    # the one root above it. Otherwise a row belongs to every root it can be reached from.
    tree = graph.is_tree
    found: dict[str, dict[tuple, _Row]] = {name: {} for name in graph.members}
    found[graph.root] = {k: _Row(k, None, 0, owner=k) for k in root_keys}
    root_pk = tuple(c.name for c in plan.pk)
    root_values = _root_values(conn, sops, plan, root_keys)
    selects = {table: _member_select(sops, plan, table) for table in graph.members}

    def values_of(table: str, key: tuple, columns: tuple[str, ...]) -> tuple:
        r = found[table][key].row
        if r is None:  # a root of the batch: its record has no row, its referenced values were read
            return key if columns == root_pk else root_values[key][columns]
        at = selects[table][1]
        return tuple(r[at[c]] for c in columns)

    # 1. descendants, level by level (a level's rows are the next level's parents)
    frontier = {graph.root: set(root_keys)}
    level = 0
    while frontier:
        level += 1
        new: dict[str, set[tuple]] = {}
        for edge in graph.child_edges:
            parents = frontier.get(edge.parent)
            if not parents:
                continue
            by_value: dict[tuple, list[tuple]] = {}
            for k in parents:
                v = values_of(edge.parent, k, edge.parent_columns)
                if None not in v:
                    by_value.setdefault(v, []).append(k)
            member = plan.members[edge.child]
            above = found[edge.parent]
            cols = [member.table.c[c] for c in edge.columns]
            items, at = selects[edge.child]
            key_at = [at[c.name] for c in member.pk]
            fk_at = [at[c] for c in edge.columns]
            here, fresh = found[edge.child], new.setdefault(edge.child, set())
            for row in sops.select_referencing(conn, member.table, cols, items, by_value, lock=True):
                key = (row[key_at[0]],) if len(key_at) == 1 else tuple(row[i] for i in key_at)
                refs = by_value.get((row[fk_at[0]],) if len(fk_at) == 1 else tuple(row[i] for i in fk_at), ())
                seen = here.get(key)
                if seen is None:
                    seen = here[key] = _Row(key, row, level)
                    fresh.add(key)
                if tree:
                    seen.owner = above[refs[0]].owner
                else:
                    seen.parents.update((edge.parent, pk) for pk in refs)
        frontier = new

    if tree:
        def roots_of(node: tuple[str, tuple]) -> set[tuple]:
            return {found[node[0]][node[1]].owner}
    else:
        reached = _roots(graph.root, found)
        roots_of = reached.__getitem__

    # 2. references from rows outside the collected set hold their targets back
    outside: dict[tuple[str, tuple], str] = {}
    inside: list[tuple[tuple[str, tuple], tuple[str, tuple], str, bool]] = []  # (src, target, why, self-ref)
    for hold in graph.holds:
        by_value = {}
        for k in found[hold.parent]:
            v = values_of(hold.parent, k, hold.parent_columns)
            if None not in v:
                by_value.setdefault(v, []).append(k)
        if not by_value:
            continue
        referrer = plan.hold_tables[hold.child]
        ref_pk = list(referrer.primary_key.columns) or list(referrer.columns)
        cols = [referrer.c[c] for c in hold.columns]
        items = [*ref_pk, *cols]
        for row in sops.select_referencing(conn, referrer, cols, items, by_value, lock=False):
            ref_key, v = tuple(row[:len(ref_pk)]), tuple(row[len(ref_pk):])
            for target in by_value.get(v, ()):
                if hold.child in found and ref_key in found[hold.child]:
                    inside.append(((hold.child, ref_key), (hold.parent, target), hold.describe(), hold.is_self))
                else:
                    outside[(hold.parent, target)] = hold.describe()

    # 3. the roots that can move: none of their rows referenced by a row that stays
    moving = set(root_keys)
    held: dict[tuple, str] = {}

    def moves(node: tuple[str, tuple]) -> bool:
        return not roots_of(node).isdisjoint(moving)

    # A row that another moving row of its own table references (a self-reference that does not
    # cascade) leaves on a later run where keys are checked row by row: one DELETE could take it first.
    row_by_row = not sops.capabilities.statement_key_checks
    while outside or inside:
        stuck = [(node, why) for node, why in outside.items() if moves(node)]
        stuck += [(target, why) for src, target, why, is_self in inside
                  if moves(target) and (not moves(src) or (row_by_row and is_self and src != target))]
        if not stuck:
            break
        for node, why in stuck:
            for r in roots_of(node) & moving:
                moving.discard(r)
                held.setdefault(r, why)

    children: dict[str, list[tuple[tuple, dict[str, Any], tuple, int]]] = {}
    order = {k: i for i, k in enumerate(root_keys)}
    for table in graph.members:
        going = []
        for key, r in found[table].items():
            if r.row is None:  # a root of this batch itself
                continue
            if tree:
                owner = r.owner
                if owner not in moving:
                    continue
            else:
                mine = [k for k in roots_of((table, key)) if k in moving]
                if not mine:
                    continue
                owner = min(mine, key=order.__getitem__)
            going.append((key, r, owner))
        if going:
            records = sops.member_records(conn, plan.members[table], [r.row for _k, r, _o in going])
            for (_key, _r, owner), record in zip(going, records):
                record["row_date"] = root_dates.get(owner)  # an object is dated by its root
            children[table] = [(key, record, owner, r.level) for (key, r, owner), record in zip(going, records)]
    return ObjectBatch([k for k in root_keys if k in moving], children, held)


def _member_select(sops: "SourceOps", plan: TablePlan, table: str) -> tuple[list[Any], dict[str, int]]:
    """How rows of an object's table are selected: the backend's list, and where the key and the
    columns of its relations are in a row."""
    graph = plan.graph
    member = plan.members[table]
    needed = [c.name for c in member.pk]
    for e in graph.child_edges + graph.holds:
        for cols in ((e.columns,) if e.child == table else ()) + ((e.parent_columns,) if e.parent == table else ()):
            needed += [c for c in cols if c not in needed]
    return sops.member_select(member, needed)


def _root_values(conn: sa.Connection, sops: "SourceOps", plan: TablePlan,
                 keys: list[tuple]) -> dict[tuple, dict[tuple[str, ...], tuple]]:
    """For each root key: the values of the column lists other rows reference."""
    graph = plan.graph
    root = plan.members[graph.root]
    pk_names = tuple(c.name for c in root.pk)
    wanted = {e.parent_columns for e in graph.child_edges + graph.holds if e.parent == graph.root} - {pk_names}
    if not wanted:  # the relations reference the root's key: the key is the value (see values_of)
        return {}
    out: dict[tuple, dict[tuple[str, ...], tuple]] = {k: {} for k in keys}
    extra = sorted({c for cols in wanted for c in cols if c not in pk_names})
    rows: dict[tuple, dict[str, Any]] = {k: dict(zip(pk_names, k)) for k in keys}
    if extra:
        items = [*root.pk, *[root.table.c[c] for c in extra]]
        for row in sops.select_referencing(conn, root.table, root.pk, items, keys, lock=False):
            rows[tuple(row[:len(pk_names)])].update(zip(extra, row[len(pk_names):]))
    for k, named in rows.items():
        for cols in wanted:
            out[k][cols] = tuple(named.get(c) for c in cols)
    return out


def _roots(root: str, found: dict[str, dict[tuple, _Row]]) -> dict[tuple[str, tuple], set[tuple]]:
    """The batch's root keys each collected row descends from, following the links forward
    from every root (data cycles of self-references included)."""
    below: dict[tuple[str, tuple], list[tuple[str, tuple]]] = {}
    for table, rows in found.items():
        for key, r in rows.items():
            for parent in r.parents:
                below.setdefault(parent, []).append((table, key))
    out: dict[tuple[str, tuple], set[tuple]] = {(t, k): set() for t, rows in found.items() for k in rows}
    for key, r in found[root].items():
        if r.row is not None:
            continue  # reached from a root, not a root of this batch
        stack = [(root, key)]
        while stack:
            node = stack.pop()
            if key in out[node]:
                continue
            out[node].add(key)
            stack.extend(below.get(node, ()))
    return out


def delete_order(plan: TablePlan, batch: ObjectBatch) -> list[tuple[str, list[tuple]]]:
    """(table, keys) groups to delete, deepest first: child tables before their parents, and in a
    self-referencing table the deeper levels first; the roots last."""
    steps: list[tuple[str, list[tuple]]] = []
    for table in reversed(plan.graph.members):
        rows = batch.children.get(table, [])
        for level in sorted({r[3] for r in rows}, reverse=True):
            steps.append((table, [r[0] for r in rows if r[3] == level]))
    return steps




@dataclass
class GraphCount:
    """What moves with the rows that qualify now, and what references hold back (a dry run)."""

    moves_with: list[dict[str, Any]]   # {"table", "via": [relation, ...], "rows"}
    held_by: list[dict[str, Any]]      # {"reference", "rule", "rows"}: member rows referenced from outside


def count_graph(conn: sa.Connection, sops: "SourceOps", plan: TablePlan) -> GraphCount:
    """Count, over every row that qualifies now (set-based, recursive where a table references
    itself), the rows of each child table that would move with them and the rows references hold."""
    graph = plan.graph
    if graph.trivial:
        return GraphCount([], [])
    selected: dict[str, Any] = {}
    for name in graph.members:
        member = plan.members[name]
        needed = sorted({c for e in graph.child_edges + graph.holds if e.parent == name for c in e.parent_columns}
                        | {c.name for c in member.pk})
        items = [member.table.c[c] for c in needed]
        if name == graph.root:
            conditions = [plan.predicate]
        else:
            conditions = [_references(member.table, e, selected[e.parent]) for e in graph.edges_into(name)
                          if not e.is_self]
        base = sa.select(*items).where(sa.or_(*conditions) if len(conditions) > 1 else conditions[0])
        selfs = [e for e in graph.edges_into(name) if e.is_self]
        if selfs:
            tree = base.cte(f"tree_{len(selected)}", recursive=True)
            alias = member.table.alias(f"below_{len(selected)}")
            step = sa.select(*[alias.c[c] for c in needed]).where(sa.or_(*[
                sa.and_(*[alias.c[c] == tree.c[p] for c, p in zip(e.columns, e.parent_columns)]) for e in selfs]))
            selected[name] = tree.union(step)
        else:
            selected[name] = base.subquery(f"sel_{len(selected)}")
    moves_with = []
    root_selfs = [e for e in graph.edges_into(graph.root) if e.is_self]
    if root_selfs:  # rows of the root table that move only because a qualifying row above them does
        total = conn.execute(sa.select(sa.func.count()).select_from(selected[graph.root])).scalar_one()
        moves_with.append({"table": graph.root, "via": [e.describe() for e in root_selfs],
                           "rows": int(total) - sops.count(conn, plan)})
    for name in graph.members[1:]:
        rows = conn.execute(sa.select(sa.func.count()).select_from(selected[name])).scalar_one()
        moves_with.append({"table": name, "via": [e.describe() for e in graph.edges_into(name)], "rows": int(rows)})
    held_by = []
    for hold in graph.holds:
        target = selected[hold.parent]
        referrer = plan.hold_tables[hold.child]
        cols = [referrer.c[c] for c in hold.columns]
        refs = sa.select(*cols).where(*[c.is_not(None) for c in cols])
        if hold.child in selected:  # rows of a member table that move too do not hold anything
            inside = selected[hold.child]
            pk = list(referrer.primary_key.columns)
            refs = refs.where(sa.tuple_(*pk).not_in(sa.select(*[inside.c[c.name] for c in pk])) if len(pk) > 1
                              else pk[0].not_in(sa.select(inside.c[pk[0].name])))
        keys = [target.c[c] for c in hold.parent_columns]
        cond = (keys[0] if len(keys) == 1 else sa.tuple_(*keys)).in_(refs)
        rows = conn.execute(sa.select(sa.func.count()).select_from(target).where(cond)).scalar_one()
        held_by.append({"reference": hold.describe(), "rule": hold.on_delete, "rows": int(rows)})
    return GraphCount(moves_with, held_by)


def _references(table: sa.Table, edge: Any, parents: Any) -> sa.ColumnElement[bool]:
    """Rows of ``table`` whose ``edge.columns`` hold the referenced values of one of ``parents``."""
    cols = [table.c[c] for c in edge.columns]
    return (cols[0] if len(cols) == 1 else sa.tuple_(*cols)).in_(
        sa.select(*[parents.c[c] for c in edge.parent_columns]))


def joins_to_root(plan: TablePlan, name: str) -> list[sa.ColumnElement[bool]]:
    """The join conditions from ``name``'s rows up to the root's, for an object whose child tables
    form a tree (one relation into each: ``ObjectGraph.is_tree``). Used by in-server moves."""
    conditions = []
    while name != plan.graph.root:
        (edge,) = plan.graph.edges_into(name)
        child, parent = plan.members[edge.child].table, plan.members[edge.parent].table
        conditions += [child.c[c] == parent.c[p] for c, p in zip(edge.columns, edge.parent_columns)]
        name = edge.parent
    return conditions


def delete_under_roots(plan: TablePlan, name: str, roots: list[Any]) -> sa.Delete:
    """DELETE the rows of ``name`` (a tree's child table) under the roots ``roots`` select: those whose
    reference holds a value of the parent rows under them (the rows a set-based copy took)."""
    (edge,) = plan.graph.edges_into(name)
    child, parent = plan.members[name].table, plan.members[edge.parent].table
    referenced = sa.select(*[parent.c[p] for p in edge.parent_columns]).where(*roots,
                                                                                *joins_to_root(plan, edge.parent))
    columns = [child.c[c] for c in edge.columns]
    return sa.delete(child).where((columns[0] if len(columns) == 1 else sa.tuple_(*columns)).in_(referenced))


__all__ = ["GraphCount", "ObjectBatch", "collect", "count_graph", "delete_order", "delete_under_roots",
           "joins_to_root"]
