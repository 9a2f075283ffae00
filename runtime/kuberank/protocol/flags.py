"""How a refused setting is named to whoever set it: by its flag and its environment variable
(the field name pydantic reports is neither, and a pod's env is where most settings come from)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from pydantic import ValidationError
from pydantic_core import ErrorDetails


def error_message(error: ErrorDetails) -> str:
    """A pydantic error's sentence without the "Value error, " it puts before a validator's."""
    return error["msg"].removeprefix("Value error, ")


def setting_problems(err: ValidationError, env_prefix: str) -> str:
    """One line naming each refused setting, ``--max-documents (KUBERANK_MAX_DOCUMENTS): ...``."""
    return "; ".join(
        f"{setting_name(error['loc'], env_prefix)}: {error_message(error)}"
        for error in err.errors()
    ) or str(err)


def variable_name(field: str, env_prefix: str) -> str:
    """The environment variable a setting is read from (``KUBERANK_MAX_DOCUMENTS``)."""
    return env_prefix + field.upper()


def setting_name(loc: tuple[int | str, ...], env_prefix: str) -> str:
    """``--flag-name (PREFIX_FLAG_NAME)`` for a field; "settings" for a check across fields."""
    if not loc:
        return "settings"
    name = str(loc[0])
    return f"--{name.replace('_', '-')} ({variable_name(name, env_prefix)})"


def misspelt_variables(environ: Mapping[str, str], prefix: str,
                       fields: Iterable[str]) -> list[str]:
    """One sentence for each ``prefix`` variable in ``environ`` that is no setting but close
    to one (``KUBERANK_MAXDOCUMENTS``): settings ignore unknown variables, so a typo in a pod's
    env changed nothing and said nothing. Variables like no setting are someone else's."""
    known = {variable_name(name, prefix) for name in fields}
    found = []
    for name in sorted(environ):
        if name.startswith(prefix) and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
            if close:
                found.append(f"{name} is not a setting and is ignored; did you mean {close[0]}?")
    return found
