"""What the /colab handlers say: error wording users can act on, bodies they can paste, newlines."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_colab_tunnel.problems import HINTS
from jupyter_colab_tunnel.server.handlers import NO_CREDENTIALS


async def fetch_error(jp_fetch: Any, *path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*path, **kwargs)
    assert e.value.response is not None
    raw = e.value.response.body
    return e.value.code, json.loads(raw), raw


@pytest.mark.parametrize("path", ["colab/status", "colab/gpu", "colab/tunnel"])
async def test_json_bodies_end_with_a_newline(jp_fetch: Any, colab_app: Any, path: str) -> None:
    r = await jp_fetch(path)
    assert r.body.endswith(b"}\n")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "the body is empty"),
        (b"   ", "the body is empty"),
        (b"start", "body must be JSON"),
        (b"[]", "body must be a JSON object"),
        (b"{}", 'the "action" field is missing'),
        (b'{"action": "go"}', "action must be one of start, stop, restart, not 'go'"),
    ],
)
async def test_bad_bodies_say_what_to_send(
    jp_fetch: Any, colab_app: Any, body: bytes, says: str
) -> None:
    code, answer, raw = await fetch_error(
        jp_fetch, "colab", "tunnel", method="POST", body=body, allow_nonstandard_methods=True
    )
    assert code == 400
    assert says in answer["message"]
    assert "not None" not in answer["message"]
    assert answer["reason"] == "Bad Request"  # the reason phrase, never null
    assert raw.endswith(b"}\n")


async def test_every_json_example_in_a_message_parses(jp_fetch: Any, colab_app: Any) -> None:
    _, answer, _ = await fetch_error(jp_fetch, "colab", "tunnel", method="POST", body=b"{}")
    examples = re.findall(r"\{[^{}]*\}", answer["message"])
    assert examples
    for example in examples:
        assert json.loads(example)["action"] == "start"


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_a_post_without_valid_credentials_hears_about_the_token(
    jp_fetch: Any, colab_app: Any, token: str | None
) -> None:
    headers = {"Authorization": f"token {token}"} if token else {"Authorization": ""}
    code, answer, _ = await fetch_error(
        jp_fetch, "colab", "tunnel", method="POST", body=b'{"action": "start"}', headers=headers
    )
    assert code == 403
    assert answer["message"] == NO_CREDENTIALS
    assert "_xsrf" not in answer["message"]


def test_hints_and_messages_quote_bodies_as_json() -> None:
    # Hints that show a POST body show it as JSON a user can paste.
    for kind, hint in HINTS.items():
        for example in re.findall(r"POST (\{[^{}]*\})", hint):
            assert json.loads(example)["action"] == "start", kind
