"""Checks every API route applies to its parameters, before any query runs.

- A query parameter the route does not declare is refused: a misspelt filter
  (`statuss=open`) would otherwise be ignored, and the caller would get
  unfiltered results without noticing.
- A query parameter given twice (`sku=A&sku=B`) is refused: every filter
  takes one value, and silently using one of them would hide the other.
- Text no database accepts (NUL, lone surrogates) in a path or query
  parameter is refused, instead of failing inside the database.
"""

from typing import Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from app.core.text import find_unstorable_text

# Enough to point at the mistake without echoing a flood of input back.
MAX_REPORTED = 5


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


_DECLARED: dict[int, frozenset[str]] = {}


def _declared(route: APIRoute) -> frozenset[str]:
    # Routes live as long as the app; keyed by identity (they are unhashable).
    names = _DECLARED.get(id(route))
    if names is None:
        names = _DECLARED[id(route)] = frozenset(_query_names(route.dependant))
    return names


def _issue(location: str, name: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": (location, name[:100]), "msg": message, "type": kind}


async def check_parameters(request: Request) -> None:
    route = request.scope.get("route")
    issues = []
    for location, values in (
        ("path", request.path_params),
        ("query", dict(request.query_params)),
    ):
        for name, value in values.items():
            if find_unstorable_text([name, value]) is not None:
                message = "Contains a NUL character or an invalid code point"
                issues.append(_issue(location, name, message, "unstorable_text"))
    if isinstance(route, APIRoute):
        for name in sorted(set(request.query_params) - _declared(route)):
            issues.append(
                _issue("query", name, "Unknown query parameter", "unknown_parameter")
            )
    for name in sorted(set(request.query_params)):
        if len(request.query_params.getlist(name)) > 1:
            message = "Given more than once; this parameter takes one value"
            issues.append(_issue("query", name, message, "repeated_parameter"))
    if issues:
        raise RequestValidationError(issues[:MAX_REPORTED])


STRICT_QUERY = Depends(check_parameters)
