"""A scripted person for sign-in pages, over an httpx2 ``AsyncClient`` (in-process or on a socket).

``authorize(url)`` follows redirects within the origins it is told to follow (Patchbay, an identity provider),
signs in when a password form appears (or submits the ``prefer`` form, such as "Sign in with <IdP>"), answers
consent forms, and returns the first redirect that leaves those
origins (the client's redirect URI, with ``code``/``state``/``iss`` or an ``error``) without following it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2 as httpx

from tests.support.forms import next_form


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Outcome:
    location: str | None
    status: int
    html: str
    headers: httpx.Headers = field(default_factory=httpx.Headers)  # the leaving redirect's own headers

    @property
    def params(self) -> dict[str, str]:
        assert self.location is not None, f"no redirect (status {self.status}); page said:\n{self.html[:2000]}"
        return {k: v[0] for k, v in parse_qs(urlsplit(self.location).query).items()}


@dataclass
class Browser:
    http: httpx.AsyncClient
    follow: tuple[str, ...]
    username: str = "alice"
    password: str = "correct horse battery"
    decision: str = "allow"
    prefer: str | None = None  # a form action to pick over the others, e.g. "/authorize/upstream"
    pages: list[str] = field(default_factory=list)

    async def authorize(self, url: str) -> Outcome:
        response = await self.http.get(url, follow_redirects=False)
        signed_in: set[str] = set()
        for _ in range(20):
            if response.status_code in (301, 302, 303, 307, 308):
                location = urljoin(str(response.url), response.headers["location"])
                if origin(location) not in self.follow:
                    return Outcome(location, response.status_code, "", response.headers)
                response = await self.http.get(location, follow_redirects=False)
                continue
            html = response.text
            self.pages.append(html)
            form = next_form(html, self.prefer)
            if form is None or (form.has_password and origin(str(response.url)) in signed_in):
                return Outcome(None, response.status_code, html)  # nothing to do, or the password was refused
            if form.has_password:
                signed_in.add(origin(str(response.url)))
            data = form.filled(self.username, self.password, self.decision)
            response = await self.http.post(urljoin(str(response.url), form.action), data=data, follow_redirects=False)
        raise AssertionError("too many steps in the sign-in flow")
