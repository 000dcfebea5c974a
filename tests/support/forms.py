"""A minimal HTML form reader for driving sign-in pages headlessly (stdlib only: the fake browser script for
mcp-remote runs it in its own process)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (name, type) of text/password inputs

    @property
    def has_password(self) -> bool:
        return any(kind == "password" for _, kind in self.inputs)

    @property
    def is_consent(self) -> bool:
        return any(name == "decision" for name, _ in self.buttons)

    def filled(self, username: str, password: str, decision: str) -> dict[str, str]:
        data = dict(self.fields)
        for name, kind in self.inputs:
            data[name] = password if kind == "password" else username
        if self.is_consent:
            data["decision"] = decision
        return data


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif self.forms and tag == "input" and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind == "hidden":
                self.forms[-1].fields[a["name"]] = a.get("value", "")
            elif kind in ("text", "password", "email"):
                self.forms[-1].inputs.append((a["name"], kind))
        elif self.forms and tag == "button" and a.get("name"):
            self.forms[-1].buttons.append((a["name"], a.get("value", "")))


def forms(html: str) -> list[Form]:
    parser = _Parser()
    parser.feed(html)
    return parser.forms


def next_form(html: str, prefer: str | None = None) -> Form | None:
    """The form a person would submit next: the one posting to ``prefer`` when there is one (e.g.
    /authorize/upstream: "Sign in with <identity provider>"), else a sign-in form, else a consent form, else a lone
    form."""
    found = forms(html)
    for form in found:
        if prefer is not None and form.action == prefer:
            return form
    for form in found:
        if form.has_password:
            return form
    for form in found:
        if form.is_consent:
            return form
    posts = [f for f in found if f.method == "post"]
    return posts[0] if len(posts) == 1 else None
