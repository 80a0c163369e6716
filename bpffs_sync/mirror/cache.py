"""The mirror as one reconciler left it: its last deep bpffs walk with every op that landed since.

Between deep passes the reconciler trusts its own pins (reconciler.py): a full pass diffs the
tree against this cache instead of walking bpffs, and a scoped pass takes the scope's entries
from here. Flat (`tree` is an ActualTree the diff reads as it is) plus each path's children, so
taking or dropping a scope costs the size of that subtree, not of the mirror.
"""

from __future__ import annotations

from dataclasses import replace

from bpffs_sync.mirror.diff import Op, OpKind
from bpffs_sync.mirror.tree import Actual, ActualTree, Kind
from bpffs_sync.paths import RelPath


class MirrorCache:
    def __init__(self, tree: ActualTree) -> None:
        self.tree = tree
        self._kids: dict[RelPath, set[RelPath]] = {}
        for path in tree:
            if path:
                self._kids.setdefault(path[:-1], set()).add(path)

    def set(self, path: RelPath, actual: Actual) -> None:
        if path not in self.tree and path:
            self._kids.setdefault(path[:-1], set()).add(path)
        self.tree[path] = actual

    def drop(self, path: RelPath) -> None:
        """path and everything below it."""
        stack = [path]
        while stack:
            p = stack.pop()
            self.tree.pop(p, None)
            stack.extend(self._kids.pop(p, ()))
        if path and (siblings := self._kids.get(path[:-1])) is not None:
            siblings.discard(path)

    def scope(self, scope: RelPath) -> ActualTree:
        """What a bpffs walk of scope would report: the entries on the way down and below it."""
        out: ActualTree = {}
        for depth in range(len(scope)):
            entry = self.tree.get(scope[:depth])
            if entry is None:
                return out
            out[scope[:depth]] = entry  # as the walk does: a file or a mount point on the way down too
            if entry.kind is not Kind.DIR:
                return out
        stack = [scope]
        while stack:
            p = stack.pop()
            entry = self.tree.get(p)
            if entry is not None:
                out[p] = entry
                stack.extend(self._kids.get(p, ()))
        return out

    def replace_scope(self, scope: RelPath, seen: ActualTree) -> None:
        """A fresh walk of scope (its entries on the way down included) replaces what was here."""
        self.drop(scope)
        for path, actual in seen.items():
            self.set(path, actual)

    def record(self, ops: list[Op]) -> None:
        """What the mirror holds once every op of a plan landed."""
        for op in ops:
            if op.kind is OpKind.REMOVE:
                self.drop(op.path)
            elif op.kind is OpKind.MKDIR:
                self.set(op.path, Actual(Kind.DIR, mode=op.mode, gid=op.gid))
            elif op.kind is OpKind.PIN:
                self.set(op.path, Actual(Kind.PIN, op.mode, op.gid, op.cgroup_id))
            else:  # CHMOD
                old = self.tree.get(op.path)
                self.set(op.path, replace(old, mode=op.mode, gid=op.gid) if old else Actual(Kind.DIR, op.mode, op.gid))
