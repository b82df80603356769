"""GET /colab/ and its assets through an in-process server: auth, types, headers, packaging."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_colab_tunnel.dashboard.handler import FILES, asset


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
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    policy = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    # Unchanged files are answered 304 from the ETag.
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*path, headers={"If-None-Match": r.headers["Etag"]})
    assert e.value.code == 304


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
