"""The first permission denial in a component's log, if any: the e2e and the RBAC cluster test
both check that the chart's RBAC refused the operator and the gateway nothing."""

from __future__ import annotations

import re

# The API server's RBAC refusal, and the owner-reference admission plugin's two. Not "403":
# a log line's milliseconds hold it too (",403"), and a terminating namespace's refusal is
# no RBAC's doing.
_DENIAL = re.compile(r'forbidden: user "[^"]+" cannot|cannot set (blockownerdeletion|an '
                     r"ownerref)|not enough permissions")


def first_denial(logs: str) -> str | None:
    """The log around the first permission denial in ``logs``, or None when there is none."""
    found = _DENIAL.search(logs.lower())
    return None if found is None else logs[max(0, found.start() - 1500):][:3000]
