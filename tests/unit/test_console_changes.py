"""The console's Changes page in-process: pending manifest changes with a side-by-side diff and risk labels;
approving (all or chosen) serves the new version and tells clients the list changed, rejecting holds it back, and
a decision on a list that changed since the page was drawn, without the CSRF token, by a non-admin or without a
recent sign-in changes nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from tests.support.waiting import until
from tests.unit.fixtures.console_admin import csrf_of, sign_in
from tests.unit.fixtures.console_review import audit_rows, browser, running

from patchbay.catalog.manifest_store import REJECTED, latest_version, read_proposed

pytestmark = pytest.mark.anyio


async def propose(app: Any, folder: Path) -> None:
    """Edit the connector: lookup gets a new required argument and another description; a new tool appears."""
    path = folder / "tools.py"
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        'def lookup(id: int) -> str:\n    """Look a customer up by id."""',
        'def lookup(id: int, region: str) -> str:\n    """Look a customer up by id and region."""',
    )
    text += (
        '\n\n@tool(read_only=True, open_world=False)\ndef fresh() -> str:\n    """A new tool."""\n    return "new"\n'
    )
    path.write_text(text, encoding="utf-8")
    await app.runtime.reload()
    await app.runtime.keeper.check()  # the keeper's poll, now: the proposals are stored


def choices(html: str) -> dict[str, str]:
    return {v.split("@")[0]: v for v in re.findall(r'name="change" value="([^"]+)"', html)}


def engine(app: Any) -> Any:
    return app.runtime.keeper.engine


async def test_pending_changes_show_a_side_by_side_diff_with_text_markers_and_risk_labels(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        await propose(app, tmp_path)
        page = await sign_in(http, "root", "/admin/changes")
        assert page.status_code == 200, page.text
        assert set(choices(page.text)) == {"tool:lookup", "tool:fresh"}
        assert "[high] breaking: new required argument" in page.text and "[medium] new tool" in page.text
        assert "Held back" in page.text
        changed = re.findall(
            r'<tr class="diff-changed"><td class="mark">~<span class="visually-hidden"> changed', page.text
        )
        added = re.findall(r'<tr class="diff-added"><td class="mark">\+', page.text)
        assert changed and added
        assert "Look a customer up by id and region." in page.text and "Look a customer up by id." in page.text


async def test_approving_chosen_changes_serves_them_and_tells_clients_the_list_changed(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        await propose(app, tmp_path)
        heard: list[str] = []
        app.runtime.hub.add(lambda method, params: heard.append(method))
        before = latest_version(engine(app))
        page = await sign_in(http, "root", "/admin/changes")
        chosen = choices(page.text)["tool:fresh"]
        answer = await http.post(
            "/admin/changes/decide", data={"csrf": csrf_of(page.text), "decision": "approve", "change": chosen}
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/changes"
        assert latest_version(engine(app)) == before + 1
        assert "fresh" in app.runtime.catalog.tools and "notifications/tools/list_changed" in heard
        after = await http.get("/admin/changes")
        assert f"Approved version {before + 1}" in after.text and set(choices(after.text)) == {"tool:lookup"}
        await until(lambda: audit_rows(tmp_path, "console.manifest.approve"), "the approval is audited")
        body = json.loads(audit_rows(tmp_path, "console.manifest.approve")[0]["body"])
        assert body["by"] == "root" and body["version"] == before + 1 and "+tool:fresh" in body["changes"]


async def test_approving_all_needs_the_list_that_was_shown(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        await propose(app, tmp_path)
        page = await sign_in(http, "root", "/admin/changes")
        token = csrf_of(page.text)
        fingerprint = re.search(r'name="all" value="([0-9a-f]+)"', page.text).group(1)
        before = latest_version(engine(app))
        stale = await http.post("/admin/changes/decide", data={"csrf": token, "decision": "approve", "all": "0" * 64})
        assert stale.status_code == 409 and "differ from the ones shown" in stale.text
        assert latest_version(engine(app)) == before
        done = await http.post("/admin/changes/decide", data={"csrf": token, "decision": "approve", "all": fingerprint})
        assert done.status_code == 303 and latest_version(engine(app)) == before + 1
        listed = {t["name"]: t for t in app.runtime.catalog.tools_wire}
        assert "region" in listed["lookup"]["inputSchema"]["required"] and "fresh" in listed


async def test_a_change_that_changed_again_since_the_page_was_shown_is_not_approved(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        await propose(app, tmp_path)
        page = await sign_in(http, "root", "/admin/changes")
        seen = choices(page.text)["tool:fresh"]
        path = tmp_path / "tools.py"
        path.write_text(path.read_text().replace('"""A new tool."""', '"""A new tool, changed."""'))
        await app.runtime.reload()
        await app.runtime.keeper.check()
        before = latest_version(engine(app))
        answer = await http.post(
            "/admin/changes/decide", data={"csrf": csrf_of(page.text), "decision": "approve", "change": seen}
        )
        assert answer.status_code == 409 and "Changed since the page was shown: tool:fresh" in answer.text
        assert latest_version(engine(app)) == before and "fresh" not in app.runtime.catalog.tools


async def test_rejecting_a_change_keeps_it_from_clients_and_off_the_page(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        await propose(app, tmp_path)
        page = await sign_in(http, "root", "/admin/changes")
        chosen = choices(page.text)["tool:fresh"]
        answer = await http.post(
            "/admin/changes/decide", data={"csrf": csrf_of(page.text), "decision": "reject", "change": chosen}
        )
        assert answer.status_code == 303
        states = {p.name: p.state for p in read_proposed(engine(app))}
        assert states["fresh"] == REJECTED and "fresh" not in app.runtime.catalog.tools
        after = await http.get("/admin/changes")
        assert set(choices(after.text)) == {"tool:lookup"} and "1 rejected until they change again" in after.text


async def test_a_decision_without_csrf_by_a_non_admin_or_without_a_recent_sign_in_changes_nothing(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as app, browser(app) as http, browser(app) as other:
        await propose(app, tmp_path)
        before = latest_version(engine(app))
        page = await sign_in(http, "root", "/admin/changes")
        chosen = choices(page.text)["tool:fresh"]
        for token in ("", "f" * 64):
            refused = await http.post(
                "/admin/changes/decide", data={"csrf": token, "decision": "approve", "change": chosen}
            )
            assert refused.status_code == 403
        denied = await sign_in(other, "plain", "/admin/changes")
        assert denied.status_code == 403 and "fresh" not in denied.text
        refused = await other.post(
            "/admin/changes/decide", data={"csrf": csrf_of(denied.text), "decision": "approve", "change": chosen}
        )
        assert refused.status_code == 403
        http.cookies.delete("patchbay_admin_signed")
        stale = await http.post(
            "/admin/changes/decide", data={"csrf": csrf_of(page.text), "decision": "approve", "change": chosen}
        )
        assert stale.status_code == 401 and 'type="password"' in stale.text
        assert latest_version(engine(app)) == before and "fresh" not in app.runtime.catalog.tools
