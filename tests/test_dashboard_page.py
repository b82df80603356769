"""GET /colab/ and its assets through an in-process server: auth, types, headers, packaging."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_colab_tunnel.server.dashboard.handler import FILES, asset


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (("colab/",), "index.html"),
        (("colab", "dashboard.js"), "dashboard.js"),
        (("colab", "dashboard.css"), "dashboard.css"),
    ],
)
async def test_page_and_assets(
    jp_fetch: Any, colab_app: Any, path: tuple[str, ...], name: str
) -> None:
    r = await jp_fetch(*path)
    assert r.code == 200
    assert r.headers["Content-Type"] == FILES[name]
    assert r.body == asset(name)
    # The page is never stored (its address may have held the token); the assets revalidate.
    assert r.headers["Cache-Control"] == ("no-store" if name == "index.html" else "no-cache")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    policy = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    if name == "index.html":
        return
    # Unchanged assets are answered 304 from the ETag.
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*path, headers={"If-None-Match": r.headers["Etag"]})
    assert e.value.code == 304


@pytest.mark.parametrize("path", [("colab/",), ("colab",)])
async def test_a_token_in_the_address_is_traded_for_the_login_cookie(
    jp_fetch: Any, jp_serverapp: Any, jp_base_url: str, colab_app: Any, path: tuple[str, ...]
) -> None:
    token = jp_serverapp.identity_provider.token
    assert token
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(
            *path,
            params={"token": token, "minutes": "2"},
            headers={"Authorization": ""},
            follow_redirects=False,
        )
    moved = e.value.response
    assert moved.code == 302
    # The same page, without the token (other parameters kept), never stored.
    assert moved.headers["Location"] == f"{jp_base_url}colab/?minutes=2"
    assert moved.headers["Cache-Control"] == "no-store"
    cookies = moved.headers.get_list("Set-Cookie")
    login = [c for c in cookies if c.startswith("username-")]
    assert login, cookies
    for name, value in moved.headers.get_all():
        assert token not in value, name
    assert token.encode() not in (moved.body or b"")

    # The cookie alone opens the page, which embeds no token.
    cookie = "; ".join(c.split(";", 1)[0] for c in cookies)
    r = await jp_fetch(
        "colab/", params={"minutes": "2"}, headers={"Authorization": "", "Cookie": cookie}
    )
    assert r.code == 200
    assert r.headers["Cache-Control"] == "no-store"
    assert r.body == asset("index.html")
    assert token.encode() not in r.body
    for name, value in r.headers.get_all():
        assert token not in value, name


async def test_page_needs_credentials(jp_fetch: Any, colab_app: Any) -> None:
    for path in (("colab/",), ("colab", "dashboard.js")):
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch(*path, headers={"Authorization": ""}, follow_redirects=False)
        assert e.value.code == 302  # to the login page, as every Jupyter page
        assert "/login?next=" in e.value.response.headers["Location"]


async def test_other_names_are_not_served(jp_fetch: Any, colab_app: Any) -> None:
    for path in (("colab", "handler.py"), ("colab", "__init__.py"), ("colab", "index.htm")):
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch(*path)
        assert e.value.code == 404


def test_assets_reference_nothing_outside_the_server() -> None:
    for name in FILES:
        text = asset(name).decode()
        # No absolute URL, protocol-relative URL or root-relative path: all relative.
        assert not re.search(r"""(?:src|href)=["'](?!data:)(?:[a-z]+:|/)""", text), name
        assert not re.search(r"""fetch\(\s*["'](?:[a-z]+:|/)""", text), name
        assert "@import" not in text, name
        assert "url(" not in text, name
