"""Debian's Chromium driven by Playwright, watching each console page for what a person would not see.

``console_browser(base_url)`` launches ``/usr/bin/chromium`` (``make chromium``; Playwright's own browser download
is never used) with the flags this closed network needs, and gives a :class:`ConsoleBrowser`. Every page it opens
records its console errors, uncaught exceptions and Content-Security-Policy violations (the
``securitypolicyviolation`` event, listened for from before the page's own scripts run); :meth:`ConsoleBrowser.check`
saves a screenshot under build/test-artifacts/console/ and runs axe-core (from tests/e2e/node), failing on any
serious or critical accessibility violation, and :meth:`ConsoleBrowser.assert_clean` fails on anything recorded.

Both helper scripts are added with ``add_init_script`` (the DevTools protocol), which the page's CSP does not
govern: the page is tested under its real policy, not one loosened for the test.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Response, async_playwright

from tests.support.node import NODE_MODULES

__all__ = ["ARTIFACTS", "CHROMIUM", "ConsoleBrowser", "console_browser", "require_chromium"]

CHROMIUM = Path("/usr/bin/chromium")
AXE = NODE_MODULES / "axe-core" / "axe.min.js"
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "console"
# Reference governance-and-fleet.md Part B: no sandbox in containers, and nothing that reaches for the network.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous, for a 2-core machine shared with other work: a wait that passes is as fast as the page.
TIMEOUT_MS = 20_000
SERIOUS = ("serious", "critical")

_CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${where}`);
});
"""
_AXE_RUN = """async () => {
  const found = await axe.run(document, {resultTypes: ['violations']});
  return found.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' '))}));
}"""


def require_chromium() -> None:
    """Skip, saying how to get them, when the browser or axe-core is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium package)")
    if not AXE.exists():
        pytest.skip(f"{AXE} is missing: run `make node`")


@dataclass
class ConsoleBrowser:
    """One browser context (one person's cookies) and everything its pages reported."""

    context: BrowserContext
    base_url: str
    problems: list[str] = field(default_factory=list)
    # Messages a test expects (a 403 page is a failed load for Chromium's console), matched as regular expressions.
    expected: list[str] = field(default_factory=list)

    async def new_page(self) -> Page:
        page = await self.context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self.problems.append(f"{page.url}: uncaught {error}"))
        return page

    async def open(self, page: Page, path: str, *, status: int = 200) -> Response:
        """Go to ``path`` and wait until it has loaded; its HTTP status must be ``status``."""
        if status >= 400:
            self.expected.append(rf"status of {status}\b")
        response = await page.goto(self.base_url + path, wait_until="load")
        assert response is not None, f"no response for {path}"
        assert response.status == status, f"{path}: {response.status}\n{(await page.content())[:3000]}"
        return response

    async def sign_in(self, page: Page, username: str, password: str) -> None:
        """Fill the sign-in page the console showed and submit it; the console page asked for comes back."""
        await page.get_by_label("Username").fill(username)
        await page.get_by_label("Password").fill(password)
        async with page.expect_navigation(wait_until="load"):
            await page.get_by_role("button", name="Sign in", exact=True).click()

    async def check(self, page: Page, name: str) -> None:
        """Screenshot the page as ``name``.png, then fail on CSP violations and serious accessibility problems."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"{_slug(name)}.png"), full_page=True)
        violations: list[str] = await page.evaluate("window.__cspViolations || []")
        self.problems += [f"{page.url}: CSP violation: {v}" for v in violations]
        found: list[dict[str, Any]] = await page.evaluate(_AXE_RUN)
        serious = [v for v in found if v["impact"] in SERIOUS]
        assert not serious, f"{name}: accessibility violations:\n" + "\n".join(
            f"  {v['impact']} {v['id']}: {v['help']} at {v['nodes']}" for v in serious
        )

    def assert_clean(self) -> None:
        assert not self.problems, "the browser reported:\n" + "\n".join(self.problems)

    def _console(self, page: Page, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if any(re.search(pattern, message.text) for pattern in self.expected):
            return
        source = message.location.get("url") or "?"
        self.problems.append(f"{page.url}: console error: {message.text} (from {source})")


@contextlib.asynccontextmanager
async def console_browser(base_url: str) -> AsyncIterator[ConsoleBrowser]:
    """A fresh headless Chromium with one context whose pages are watched; closed on exit."""
    require_chromium()
    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True
        )
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            await context.add_init_script(script=_CSP_LISTENER)
            await context.add_init_script(path=AXE)
            yield ConsoleBrowser(context, base_url)
        finally:
            await browser.close()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "page"
