"""The catalogue of audit actions (``pds_kernel/audit_actions.py``) is the list of what the code
writes: every action text in the code is catalogued, and every catalogued action is written
somewhere. The store's refusal of an uncatalogued action is tested on a real database in
``tests/integration/test_audit.py``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pds_kernel.airlock.states import TRANSITIONS, Action
from pds_kernel.audit_actions import ACTIONS, check_action

REPO = Path(__file__).resolve().parents[2]
GROUPS = sorted({name.split(".", 1)[0] for name in ACTIONS})
#: A text of the code that looks like an action of one of the catalogue's groups.
LOOKS_LIKE_AN_ACTION = re.compile(rf"^({'|'.join(GROUPS)})(\.[a-z][a-z_]*)+\.?$")
#: Texts of those groups' shape that are not actions (a module, a file, a socket, a settings key).
NOT_ACTIONS = {"audit.key", "audit.key_file", "import.html", "platform.html", "hub.sock", "packages.sock",
               "hub.public_url"}


def _texts_of_the_code() -> dict[str, str]:
    """Every string constant of the platform's code that looks like an action, with one file."""
    found: dict[str, str] = {}
    for folder in ("pds_kernel", "hub_config"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                        and LOOKS_LIKE_AN_ACTION.match(node.value) and node.value not in NOT_ACTIONS):
                    found.setdefault(node.value, str(path.relative_to(REPO)))
    return found


def _airlock_request_actions() -> set[str]:
    """The service writes ``airlock.request.<action>`` for each move of the state machine."""
    return {f"airlock.request.{action.value}" for action in Action} | {rule.event for rule in TRANSITIONS.values()}


def test_every_action_of_the_code_is_catalogued():
    texts = _texts_of_the_code()
    assert len(texts) > 60, "the scan of the code found too few actions: is the pattern still right?"
    prefixes = {text for text in texts if text.endswith(".")}  # completed in the code
    missing = {text: where for text, where in texts.items() if text not in prefixes and text not in ACTIONS}
    assert not missing, f"audit actions written by the code but not catalogued: {missing}"
    for prefix in prefixes:
        assert any(name.startswith(prefix) for name in ACTIONS), prefix
    assert _airlock_request_actions() <= set(ACTIONS)


def test_every_catalogued_action_is_written_by_the_code():
    written = set(_texts_of_the_code()) | _airlock_request_actions()
    assert set(ACTIONS) - written == set()


def test_every_action_says_what_it_records_and_its_target():
    for name, info in ACTIONS.items():
        assert re.fullmatch(r"[a-z]+(\.[a-z_]+)+", name), name
        assert info.records and info.records[0].islower() and not info.records.endswith("."), name
        assert info.target, name


@pytest.mark.parametrize("name", ["registry.readd", "", "Registry.read", "registry.read ", "x" * 500])
def test_check_action_refuses_what_is_not_catalogued(name):
    with pytest.raises(ValueError, match="not in the catalogue of audit actions"):
        check_action(name)
    check_action("registry.read")  # a catalogued one passes
