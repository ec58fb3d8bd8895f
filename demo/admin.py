"""A tenant admin, simulated over plain HTTP: reads the email in the sandbox outbox, follows its
link, signs in on the (sandbox) Entra page when a decision page asks for it, and submits the page's
form as a browser would (the browser test does the same in Chromium).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (name, value)


class _PageParser(HTMLParser):
    # The stdlib parser suffices for our own pages and the sandbox's: a few forms and links.
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.links: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(action=a.get("action", ""), method=a.get("method", "get").lower()))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1].fields[a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms:
            self.forms[-1].buttons[a.get("id", "")] = (a.get("name", ""), a.get("value", ""))
        elif tag == "a" and a.get("id") and a.get("href"):
            self.links[a["id"]] = a["href"]


def parse(html: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(html)
    return parser


class Admin:
    """Follows links and presses buttons; every page it lands on is kept in ``pages``."""

    def __init__(self, ca_file: str, *, login: str = "", password: str = "") -> None:
        self.http = httpx.Client(
            verify=ssl.create_default_context(cafile=ca_file), follow_redirects=False, timeout=30
        )
        self.pages: list[tuple[str, int, str]] = []
        self.login, self.password = login, password  # empty: never signs in

    def close(self) -> None:
        self.http.close()

    def open(self, url: str) -> str:
        response = self.http.get(url)
        while response.is_redirect:
            url = urljoin(url, response.headers["location"])
            response = self.http.get(url)
        self.pages.append((url, response.status_code, response.text))
        return self._signed_in_if_asked()

    def _signed_in_if_asked(self) -> str:
        """A decision page that offers ``#signin`` gets the admin's sign-in on Entra's page first."""
        url, _, html = self.pages[-1]
        link = parse(html).links.get("signin")
        if not self.login or link is None:
            return html
        self.open_without_signing_in(urljoin(url, link))
        return self.sign_in()

    def open_without_signing_in(self, url: str) -> str:
        login, self.login = self.login, ""
        try:
            return self.open(url)
        finally:
            self.login = login

    def sign_in(self) -> str:
        """Fill in Entra's sign-in page (the last page) and follow the redirects back."""
        url, _, html = self.pages[-1]
        form = next(f for f in parse(html).forms if "signin" in f.buttons)
        target = urljoin(url, form.action or url)
        response = self.http.post(target, data={**form.fields, "login": self.login, "passwd": self.password})
        while response.is_redirect:
            target = urljoin(target, response.headers["location"])
            response = self.http.get(target)
        self.pages.append((target, response.status_code, response.text))
        return response.text

    def press(self, button_id: str) -> str:
        """Submit the form holding ``button_id`` on the last page, and follow redirects."""
        url, _, html = self.pages[-1]
        form = next(f for f in parse(html).forms if button_id in f.buttons)
        name, value = form.buttons[button_id]
        data = {**form.fields, **({name: value} if name else {})}
        target = urljoin(url, form.action or url)
        response = self.http.post(target, data=data)
        while response.is_redirect:
            target = urljoin(target, response.headers["location"])
            response = self.http.get(target)
        self.pages.append((target, response.status_code, response.text))
        return self._signed_in_if_asked()

    def last_status(self) -> int:
        return self.pages[-1][1]


def link_in(mail_html: str, link_id: str) -> str:
    links = parse(mail_html).links
    if link_id not in links:
        raise LookupError(f"the email has no link #{link_id}; it has {sorted(links)}")
    return links[link_id]
