"""The small HTML pages a tenant admin sees: consent confirmation, approval, and their outcomes.

Every value is HTML-escaped; pages load nothing (no scripts, images or fonts) and the one inline
style block is allowed by its hash in the Content-Security-Policy. Buttons have stable ids
(``#confirm``, ``#approve``, ``#reject``) for browser tests. Pages only ever *offer* an action: the
action is a form POST, because mail scanners follow links with GET.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5;color:#1b1b1b;background:#fff}"
    "h1{font-size:1.5rem}dt{font-weight:600}dd{margin:0 0 .5rem 0}"
    "button{font-size:1rem;padding:.5rem 1.25rem;margin-right:.75rem;border-radius:4px;"
    "border:1px solid #333;cursor:pointer}"
    "button:focus{outline:3px solid #005fcc;outline-offset:2px}"
    "#approve,#confirm{background:#0b6e2e;color:#fff}#reject{background:#a4262c;color:#fff}"
    ".note{color:#444;font-size:.9rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()

HEADERS: dict[str, str] = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Button:
    id: str  # stable element id: confirm, approve, reject
    label: str
    name: str = ""  # form field the button submits, if any
    value: str = ""


def page(title: str, paragraphs: Iterable[str], *, details: Mapping[str, str] | None = None) -> str:
    """A page with a heading, some text and optionally a description list; no action."""
    return _document(title, _body(title, paragraphs, details))


def form_page(
    title: str,
    paragraphs: Iterable[str],
    *,
    action: str,
    hidden: Mapping[str, str],
    buttons: Iterable[Button],
    details: Mapping[str, str] | None = None,
    note: str = "",
) -> str:
    """A page offering one or more buttons that POST a form to ``action``."""
    return _document(title, _body(title, paragraphs, details) + _form(action, hidden, buttons, note))


def _form(action: str, hidden: Mapping[str, str], buttons: Iterable[Button], note: str) -> str:
    fields = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in hidden.items()
    )
    controls = "".join(
        f'<button type="submit" id="{escape(b.id)}"'
        + (f' name="{escape(b.name)}" value="{escape(b.value)}"' if b.name else "")
        + f">{escape(b.label)}</button>"
        for b in buttons
    )
    form = f'<form method="post" action="{escape(action)}">{fields}{controls}</form>'
    extra = f'<p class="note">{escape(note)}</p>' if note else ""
    return form + extra


def _body(title: str, paragraphs: Iterable[str], details: Mapping[str, str] | None) -> str:
    parts = [f"<h1>{escape(title)}</h1>"]
    parts.extend(f"<p>{escape(text)}</p>" for text in paragraphs)
    if details:
        items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in details.items())
        parts.append(f"<dl>{items}</dl>")
    return "".join(parts)


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex, nofollow"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><main>{body}</main></body></html>"
    )


# -- pages for the signed-in decision (onboarding/signin.py) ---------------------------------------


@dataclass(frozen=True)
class Link:
    id: str  # stable element id: signin, previous, next
    label: str
    href: str  # a path of this app


@dataclass(frozen=True)
class Listing:
    """One page of the mailbox list a decision binds."""

    heading: str
    items: tuple[str, ...]
    first_number: int  # 1-based number of the first item
    links: tuple[Link, ...] = ()


def _links(links: Iterable[Link]) -> str:
    shown = "".join(f'<a id="{escape(k.id)}" href="{escape(k.href)}">{escape(k.label)}</a> ' for k in links)
    return f"<p>{shown.strip()}</p>" if shown else ""


def link_page(
    title: str, paragraphs: Iterable[str], *, links: Iterable[Link], details: Mapping[str, str] | None = None
) -> str:
    """A page whose way on is a link (a GET: signing in changes nothing but the browser's cookie)."""
    return _document(title, _body(title, paragraphs, details) + _links(links))


def review_page(
    title: str,
    paragraphs: Iterable[str],
    *,
    details: Mapping[str, str],
    listing: Listing,
    action: str,
    hidden: Mapping[str, str],
    buttons: Iterable[Button],
    note: str = "",
) -> str:
    """The decision page: what is asked, one page of the mailbox list, and the form that decides."""
    items = "".join(f"<li>{escape(item)}</li>" for item in listing.items)
    listed = (
        f"<h2>{escape(listing.heading)}</h2>"
        f'<ol id="mailboxes" start="{listing.first_number}">{items}</ol>' + _links(listing.links)
    )
    return _document(title, _body(title, paragraphs, details) + listed + _form(action, hidden, buttons, note))
