"""Validation of the names that reach paths, URLs, JupyterHub and Kubernetes labels."""

from __future__ import annotations

import re

from ..errors import InvalidInput

#: Project ids are used as directory names, JupyterHub server names, group names and Kubernetes
#: label values: lower-case DNS-1123 labels of 3 to 40 characters.
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
#: User names as JupyterHub normalises them (lower case), safe in paths and labels.
USER_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")


def check_project_id(value: str) -> str:
    if not isinstance(value, str) or not PROJECT_ID.fullmatch(value):
        raise InvalidInput(
            f"invalid project id {value!r}: use 3-40 lower-case letters, digits or '-', "
            "starting with a letter"
        )
    return value


def check_user_name(value: str) -> str:
    if not isinstance(value, str) or not USER_NAME.fullmatch(value):
        raise InvalidInput(
            f"invalid user name {value!r}: use lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter (at most 63)"
        )
    return value
