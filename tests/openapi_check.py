"""Hold every `/colab/` response the tests see to docs/openapi.yaml.

`check_response` is called by `ServerProcess.request` (tests/server_process.py) and by the
`jp_fetch` wrapper (tests/conftest.py) for every answer to a `/colab/` path. A response whose
status is not declared for its operation, whose Content-Type is not the declared media type,
whose declared headers are missing or wrong, or whose JSON body does not match the declared
schema raises `SpecViolation`, which fails the test that made the request.

`SpecViolation` is deliberately not an `AssertionError`: helpers that poll and retry on
assertion errors (`ServerProcess.wait_for`) must not swallow a drift between code and spec.

Requests to a method or path the spec does not declare (say `PUT /colab/tunnel`) are not
operations of the API and are only counted (`STATS["undocumented"]`).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
SPEC_URI = "urn:jupyter-colab-tunnel:openapi"
PREFIX = "/colab/"
FILES_PREFIX = "/colab/files/"
FILES_TEMPLATE = "/colab/files/{path}"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# What the hooks checked in this run, for the session report and for tests of the hooks.
STATS: Counter[str] = Counter()


class SpecViolation(Exception):
    """A response that docs/openapi.yaml does not allow."""


@functools.lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    loaded = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    resource = Resource(contents=spec(), specification=DRAFT202012)
    return Registry().with_resource(SPEC_URI, resource)


def _pointer(parts: list[str]) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _node(pointer: str) -> Any:
    node: Any = spec()
    for part in pointer.split("/") if pointer else []:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _locate(pointer: str) -> tuple[str, Any]:
    """Follow non-schema `$ref`s (responses, headers): the final pointer and its node."""
    node = _node(pointer)
    for _ in range(20):
        if not (isinstance(node, dict) and "$ref" in node):
            return pointer, node
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise SpecViolation(f"only local $refs are supported, not {ref}")
        pointer = ref[2:]
        node = _node(pointer)
    raise SpecViolation(f"$ref loop at {pointer}")


@functools.cache
def _validator(pointer: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/{pointer}"},
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def schema_validator(name: str) -> Draft202012Validator:
    """A validator for `#/components/schemas/<name>`."""
    return _validator(_pointer(["components", "schemas", name]))


def operation_path(url_path: str, base_url: str = "/") -> str | None:
    """The spec path of a request path (`/base/colab/tunnel?x` -> `/colab/tunnel`), or None."""
    path = urlsplit(url_path).path
    base = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    for candidate in (path, unquote(path)):
        if candidate.startswith(base):
            rel = "/" + candidate[len(base) :]
            if rel == FILES_PREFIX.rstrip("/") or rel.startswith(FILES_PREFIX):
                return FILES_TEMPLATE  # one templated path: any file under the root
            if rel.startswith(PREFIX):
                return rel
    return None


def _media_type(headers: Mapping[str, str]) -> str:
    for key, value in headers.items():
        if key.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return ""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def check_response(
    method: str,
    path: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
) -> None:
    """Validate one response to `method path` (path relative to base_url, starting /colab/)."""
    path = urlsplit(path).path
    method = method.lower()
    item = spec()["paths"].get(path)
    if item is None or method not in item:
        STATS["undocumented"] += 1
        return
    where = f"{method.upper()} {path} -> {status}"
    responses = item[method]["responses"]
    key = str(status) if str(status) in responses else f"{str(status)[0]}XX"
    if key not in responses:
        key = "default"
    if key not in responses:
        raise SpecViolation(
            f"{where}: status {status} is not declared (declared: {', '.join(responses)}); "
            f"body: {body[:500]!r}"
        )
    at, response = _locate(_pointer(["paths", path, method, "responses", key]))
    for name in response.get("headers") or {}:
        header_at, header = _locate(f"{at}/headers/{_pointer([name])}")
        value = _header(headers, name)
        if value is None:
            if header.get("required"):
                raise SpecViolation(f"{where}: required header {name} is missing")
            continue
        errors = list(_validator(f"{header_at}/schema").iter_errors(value))
        if errors:
            raise SpecViolation(f"{where}: header {name}: {value!r}: {errors[0].message}")
    content = response.get("content")
    if not content:
        STATS["validated"] += 1
        return
    media = _media_type(headers)
    if media not in content:
        raise SpecViolation(
            f"{where}: Content-Type {media or '(none)'!r} is not one of {', '.join(content)}; "
            f"body: {body[:500]!r}"
        )
    if media != "application/json":
        STATS["validated"] += 1  # a file's bytes (the files route): the media type is the check
        return
    try:
        document = json.loads(body)
    except ValueError as e:
        raise SpecViolation(f"{where}: the body is not JSON ({e}): {body[:500]!r}") from None
    validator = _validator(f"{at}/content/{_pointer([media])}/schema")
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        details = "; ".join(
            f"at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:5]
        )
        raise SpecViolation(f"{where}: the body does not match docs/openapi.yaml: {details}")
    STATS["validated"] += 1
    STATS[f"{method.upper()} {path} {status}"] += 1


def check_url_response(
    method: str, url_path: str, base_url: str, status: int, headers: Mapping[str, str], body: bytes
) -> None:
    """`check_response` for a full request path; does nothing outside `<base_url>colab/`."""
    path = operation_path(url_path, base_url)
    if path is not None:
        check_response(method, path, status, headers, body)


def validating_fetch(
    fetch: Callable[..., Awaitable[Any]],
    base_url: str,
    observe: Callable[[bytes], None] = lambda body: None,
) -> Callable[..., Awaitable[Any]]:
    """Wrap pytest-jupyter's `jp_fetch`: every `/colab/` answer, success or error, is checked."""
    from tornado.httpclient import HTTPClientError

    async def checked(*parts: str, **kwargs: Any) -> Any:
        method = str(kwargs.get("method", "GET"))
        try:
            response = await fetch(*parts, **kwargs)
        except HTTPClientError as e:
            if e.response is not None:
                _check_tornado(method, base_url, e.response, observe)
            raise
        _check_tornado(method, base_url, response, observe)
        return response

    return checked


def _check_tornado(
    method: str, base_url: str, response: Any, observe: Callable[[bytes], None]
) -> None:
    body = response.body or b""
    observe(body)
    check_url_response(
        method,
        urlsplit(response.effective_url or response.request.url).path,
        base_url,
        response.code,
        dict(response.headers.get_all()),
        body,
    )
