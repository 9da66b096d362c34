"""Structural test: every state-changing service method records an audit event in the same
transaction as its change (OpenSAFELY airlock's ``test_dal_methods_have_audit_event_parameter``,
done on the source: each ``with transaction(...) as s:`` block that writes must also record).

A block *writes* when it adds, deletes or merges through the session, executes an UPDATE, DELETE
or INSERT, assigns an attribute of a loaded row, or calls a session-taking write helper
(``self._write_*``, ``self._delete_*``, ``self._apply*``). It *records* when it calls
``<audit>.record(..., session=...)`` / ``self._record(..., session=...)``, or a helper that is
itself shown (by the same test) to record in the session it is given. Pure AST: no I/O.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "pds_kernel"
#: The services that change the platform's state (the registry, the airlock, the end of a project).
SERVICES = ["registry/service.py", "airlock/service.py", "project_end.py"]
#: Helpers that work inside a session their caller opened: they must record in it.
HELPER_PREFIXES = ("_write_", "_delete_", "_apply")
#: Writes that are not a state change of their own, with the reason.
EXEMPT = {
    ("airlock/service.py", "release", "take_claim"):
        "the release claim is a lock (a conditional UPDATE), not a state: the release is audited "
        "with the RELEASED state, a failed copy with the claim's removal (same transaction)",
}


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return _name(node.func)
    return "?"


def _is_transaction(item: ast.withitem) -> bool:
    return isinstance(item.context_expr, ast.Call) and _name(item.context_expr.func).endswith("transaction")


def _writes(block: list[ast.stmt], session: str) -> list[str]:
    found = []
    for node in (n for stmt in block for n in ast.walk(stmt)):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name in {f"{session}.add", f"{session}.delete", f"{session}.merge"}:
                found.append(name)
            elif name == f"{session}.execute" and node.args and _name(node.args[0]).split(".")[0] in {
                    "update", "delete", "insert"}:
                found.append(f"{session}.execute({_name(node.args[0])})")
            elif name == "setattr":
                found.append("setattr")
            elif name.startswith("self.") and name.split(".")[-1].startswith(HELPER_PREFIXES):
                found.append(name)
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for t in (target.elts if isinstance(target, ast.Tuple) else [target]):
                    if isinstance(t, ast.Attribute) and _name(t.value) != "self":
                        found.append(f"{_name(t)} =")
    return found


def _records(block: list[ast.stmt], session: str) -> bool:
    for node in (n for stmt in block for n in ast.walk(stmt)):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            in_session = any(k.arg == "session" and _name(k.value) == session for k in node.keywords)
            if name.endswith(".record") or name == "self._record":
                if in_session:
                    return True
            elif name.startswith("self.") and name.split(".")[-1].startswith(HELPER_PREFIXES):
                return True  # a helper given the session: checked to record by test_helpers_record
    return False


def _functions(tree: ast.Module):
    """(class, function, nested function or "", node) for every function of the module."""
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)] + [None]:
        body = cls.body if cls else tree.body
        for fn in (n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            yield (cls.name if cls else "", fn.name, "", fn)
            for inner in (n for n in ast.walk(fn) if isinstance(n, ast.FunctionDef) and n is not fn):
                yield (cls.name if cls else "", fn.name, inner.name, inner)


def _transaction_blocks(fn: ast.AST):
    for node in ast.walk(fn):
        if isinstance(node, ast.With) and node.items and _is_transaction(node.items[0]):
            var = node.items[0].optional_vars
            yield (var.id if isinstance(var, ast.Name) else "s"), node.body


def _blocks():
    found = []
    for module in SERVICES:
        tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
        for cls, fn, inner, node in _functions(tree):
            if inner == "" and any(isinstance(n, ast.FunctionDef) and n is not node for n in ast.walk(node)):
                nested = {id(b) for n in ast.walk(node) if isinstance(n, ast.FunctionDef) and n is not node
                          for b in ast.walk(n)}
            else:
                nested = set()
            for session, body in _transaction_blocks(node):
                if id(body[0]) in nested:
                    continue  # counted with the nested function that holds it
                writes = _writes(body, session)
                if writes:
                    found.append((module, cls, fn, inner, session, body, writes))
    return found


BLOCKS = _blocks()


def test_the_scan_finds_the_services_writes():
    """Not vacuous: the registry, the airlock and the end of a project each have writing blocks."""
    modules = {b[0] for b in BLOCKS}
    assert modules == set(SERVICES)
    assert len(BLOCKS) >= 15, [(b[1], b[2], b[3]) for b in BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b[0]}::{b[1]}.{b[2]}{'.' + b[3] if b[3] else ''}")
def test_every_write_records_an_audit_event_in_its_transaction(block):
    module, _cls, fn, inner, session, body, writes = block
    if (module, fn, inner) in EXEMPT:
        return
    assert _records(body, session), (
        f"{module} {fn}{'.' + inner if inner else ''} writes ({', '.join(writes)}) in a transaction "
        f"that records no audit event with session={session}")


def _helpers():
    for module in SERVICES:
        tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
        for _cls, fn, inner, node in _functions(tree):
            if inner == "" and fn.startswith(HELPER_PREFIXES):
                yield module, fn, node


@pytest.mark.parametrize("helper", list(_helpers()), ids=lambda h: f"{h[0]}::{h[1]}")
def test_helpers_record_in_the_session_they_are_given(helper):
    """``_write_*``/``_delete_*``/``_apply*`` take the caller's session and record in it."""
    module, fn, node = helper
    params = [a.arg for a in node.args.args]
    session = "s" if "s" in params else None
    assert session, f"{module} {fn} takes no session: it cannot share its caller's transaction"
    assert _records(node.body, session), f"{module} {fn} records no audit event in its session"
