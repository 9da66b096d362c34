"""Validation of the names that reach paths, URLs, JupyterHub and Kubernetes labels."""

from __future__ import annotations

import re

from ..errors import InvalidInput

#: Project ids are used as directory names, JupyterHub server names, group names and Kubernetes
#: label values: lower-case DNS-1123 labels of 3 to 40 characters.
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
#: User names of accounts that exist: lower case as JupyterHub normalises them, safe in paths and
#: URLs. The rule of releases before 2026-12-06, still accepted to name an existing account.
USER_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")
#: User names of new accounts: also valid Kubernetes label values (the ``pds.user`` label of a
#: workspace's pods), which must end with a letter or digit.
NEW_USER_NAME = re.compile(r"^[a-z](?:[a-z0-9._-]{0,61}[a-z0-9])?$")


def check_project_id(value: str) -> str:
    if not isinstance(value, str) or not PROJECT_ID.fullmatch(value):
        raise InvalidInput(
            f"invalid project id {value!r}: use 3-40 lower-case letters, digits or '-', "
            "starting with a letter"
        )
    return value


def check_user_name(value: str) -> str:
    """A name that may belong to an existing account (see :func:`check_new_user_name` for new ones)."""
    if not isinstance(value, str) or not USER_NAME.fullmatch(value):
        raise InvalidInput(
            f"invalid user name {value!r}: use lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter (at most 63)"
        )
    return value


def check_new_user_name(value: str) -> str:
    """A name for a new account: the rule of :func:`check_user_name`, ending with a letter or digit."""
    check_user_name(value)
    if not NEW_USER_NAME.fullmatch(value):
        raise InvalidInput(
            f"invalid user name {value!r} for a new account: end it with a letter or digit (a "
            "Kubernetes label value, which a workspace's pods carry, cannot end in '.', '_' or '-')"
        )
    return value


def is_label_safe_user_name(value: str) -> bool:
    """Whether ``value`` is a new account's name, so a Kubernetes label value (:func:`check_new_user_name`)."""
    return isinstance(value, str) and NEW_USER_NAME.fullmatch(value) is not None


def check_label_safe_user_name(value: str) -> str:
    """``value`` as a Kubernetes label value, or a refusal saying what an administrator does about
    an account named before the rule of :func:`check_new_user_name` (its pods cannot be created)."""
    check_user_name(value)
    if not NEW_USER_NAME.fullmatch(value):
        raise InvalidInput(
            f"the user name {value!r} ends in {value[-1]!r}, which a Kubernetes label value cannot "
            "(the account was made before new names had to end with a letter or digit): its "
            "workspace cannot start on Kubernetes. An administrator creates an account under a new "
            "name (`pds project add-user NEW-NAME`), adds it to this person's projects "
            "(`pds project add-member`) and disables this one (`pds project disable-user`)"
        )
    return value
