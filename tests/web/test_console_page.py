"""The console page itself (without a browser): served at /admin/, loads nothing from elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "static"


def test_console_is_served_at_admin_with_a_strict_policy(client):
    assert client.get("/admin").headers["Location"].endswith("/admin/")
    response = client.get("/admin/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "商户后台" in response.get_data(as_text=True)
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


def test_every_script_and_style_the_console_loads_is_ours_and_exists(client):
    page = client.get("/admin/").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert assets, page
    for asset in assets:
        assert asset.startswith("/static/"), asset  # no CDN: a merchant's intranet may have none
        response = client.get(asset)
        response.close()  # a static file is streamed from disk: release it
        assert response.status_code == 200, asset
    assert "<script>" not in page  # no inline script: the policy would refuse it


def test_vendored_echarts_keeps_its_license_and_pinned_version():
    vendor = STATIC / "vendor" / "echarts"
    assert "Apache License" in (vendor / "LICENSE").read_text(encoding="utf-8")
    assert "echarts 5.6.0" in (vendor / "VERSION").read_text(encoding="utf-8")
    assert (vendor / "echarts.common.min.js").stat().st_size > 100_000
