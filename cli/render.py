"""How the CLI shows the API's documents to a person (rich tables); ``--json`` bypasses all of this."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from onboarding.domain import StepState

STATE_STYLES = {
    "done": "green",
    "succeeded": "bold green",
    "verified": "green",
    "running": "cyan",
    "waiting": "yellow",
    "pending": "dim",
    "skipped": "dim",
    "partial": "yellow",
    "failed": "bold red",
    "rejected": "red",
    "expired": "red",
    "cancelled": "magenta",
    "compensated": "magenta",
}


# An onboarding has up to 10,000 mailboxes: the table shows this many; --json has them all.
ATTENTION_ROWS = 50


def styled(state: Any) -> Text:
    text = str(state or "")
    return Text(text, style=STATE_STYLES.get(text, ""))


def _overview(view: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    request = view.get("request") or {}
    waiting = view.get("waitingFor") or {}
    app = view.get("app") or {}
    secret = view.get("secret") or {}
    rows: list[tuple[str, Any]] = [
        ("Onboarding", view.get("id")),
        ("Status", styled(view.get("status"))),
        ("Name", request.get("displayName")),
        ("Reference", view.get("externalReference")),
        ("Protocols", ", ".join(request.get("protocols") or [])),
        ("Consent mode", request.get("consentMode")),
        ("Created", view.get("createdAt")),
        ("Updated", view.get("updatedAt")),
    ]
    if waiting:
        rows.append(
            (
                "Waiting for",
                f"{waiting.get('kind')} until {waiting.get('deadline')} "
                f"({waiting.get('remindersSent', 0)} reminders sent)",
            )
        )
    if app.get("appId"):
        rows.append(("App id", app.get("appId")))
    if app.get("servicePrincipalId"):
        rows.append(("Service principal", app.get("servicePrincipalId")))
    if secret.get("latestSecretUri"):
        rows.append(("Secret (hand-off)", secret.get("latestSecretUri")))
        rows.append(("Secret expires", secret.get("expiresOn")))
        for reader in secret.get("readers") or []:
            rows.append(("Read by", f"{reader.get('principalId')} ({reader.get('role')}, this secret only)"))
    for label, value in rows:
        if value not in (None, ""):
            grid.add_row(label, value if isinstance(value, Text) else str(value))
    return grid


def steps_table(view: dict[str, Any]) -> Table:
    table = Table(title="Steps", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("Step")
    table.add_column("State")
    table.add_column("At")
    table.add_column("Detail", overflow="fold")
    for number, step in enumerate(view.get("steps") or [], start=1):
        table.add_row(
            str(number),
            str(step.get("title") or step.get("name")),
            styled(step.get("state")),
            str(step.get("at") or ""),
            str(step.get("detail") or ""),
        )
    return table


def mailboxes_table(view: dict[str, Any]) -> Table:
    mailboxes = view.get("mailboxes") or {}
    table = Table(title=f"Mailboxes ({mailboxes.get('total', 0)})", title_justify="left")
    table.add_column("State")
    table.add_column("Mailboxes", justify="right")
    for state, count in sorted((mailboxes.get("counts") or {}).items()):
        table.add_row(styled(state), str(count))
    return table


def attention_table(view: dict[str, Any]) -> Table | Group | None:
    """The mailboxes that need an admin, with the cause and fix the API gives."""
    results = (view.get("mailboxes") or {}).get("results") or []
    needing = [r for r in results if r.get("needsAction")]
    if not needing:
        return None
    shown = needing[:ATTENTION_ROWS]
    table = Table(title=f"Mailboxes needing action ({len(needing)})", title_justify="left")
    table.add_column("Mailbox")
    table.add_column("State")
    table.add_column("Detail", overflow="fold")
    for item in shown:
        table.add_row(str(item.get("mailbox")), styled(item.get("state")), str(item.get("detail") or ""))
    if len(needing) > len(shown):
        return Group(table, Text(f"... and {len(needing) - len(shown)} more: --json lists every mailbox"))
    return table


def errors_table(view: dict[str, Any]) -> Table | None:
    errors = view.get("errors") or []
    if not errors:
        return None
    table = Table(title="Errors", title_justify="left")
    for column in ("Step", "Code", "Message", "Fix"):
        table.add_column(column, overflow="fold")
    for error in errors:
        table.add_row(*(str(error.get(k) or "") for k in ("step", "code", "message", "fix")))
    return table


def onboarding(view: dict[str, Any]) -> Group:
    parts: list[Any] = [_overview(view), steps_table(view), mailboxes_table(view)]
    parts += [t for t in (attention_table(view), errors_table(view)) if t is not None]
    compensation = view.get("compensation") or []
    if compensation:
        parts.append(
            Group(
                Text("Undone / left for an admin:", style="bold"), *(Text(f"  - {c}") for c in compensation)
            )
        )
    spaced: list[Any] = []
    for part in parts:  # a blank line between the sections
        spaced += [part, Text("")]
    return Group(*spaced[:-1])


def offboarding(onboarding_id: str, part: dict[str, Any]) -> Group:
    """The offboarding's outcome: its steps, what it removed and what is left for an admin."""
    parts: list[Any] = [Text.assemble(f"Offboarding of {onboarding_id}: ", styled(part.get("status")))]
    if part.get("steps"):
        parts.append(steps_table(part))
    for label, items in (("Removed", part.get("removed")), ("Left for an admin", part.get("left"))):
        if items:
            parts.append(Text(f"{label}:", style="bold"))
            parts += [Text(f"  - {item}") for item in items]
    return Group(*parts)


def diagnosis(report: dict[str, Any]) -> Group | Text:
    """The links checked, in order, with the first broken one's fix."""
    if report.get("status") == "failed":
        error = report.get("error") or {}
        return Text(f"The diagnosis could not run: {error.get('message', '')} {error.get('fix', '')}".strip())
    table = Table(title="Links, in the order the mail client depends on them")
    for column in ("Link", "State", "Detail", "Fix"):
        table.add_column(column)
    for link in report.get("links") or []:
        table.add_row(
            link.get("name", ""), styled(link.get("state", "")), link.get("detail", ""), link.get("fix", "")
        )
    first = report.get("firstBroken")
    verdict = Text(f"First broken link: {first}" if first else "Every link works.")
    return Group(table, verdict)


def listing(items: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Onboardings ({len(items)})", title_justify="left")
    for column in ("Id", "Status", "Reference", "Name", "Created"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(
            str(item.get("id")),
            styled(item.get("status")),
            str(item.get("externalReference") or ""),
            str(item.get("displayName") or ""),
            str(item.get("createdAt") or ""),
        )
    return table


_IN_HAND = (StepState.RUNNING, StepState.WAITING, StepState.FAILED)


def progress_text(view: dict[str, Any]) -> str:
    """One line for the progress bar: the status and the step in hand."""
    current = next((s for s in view.get("steps") or [] if s.get("state") in _IN_HAND), None)
    status = str(view.get("status") or "")
    if current is None:
        return status
    return f"{status}: {current.get('title') or current.get('name')}"


def steps_done(view: dict[str, Any]) -> tuple[int, int]:
    steps = view.get("steps") or []
    finished = sum(1 for s in steps if s.get("state") in (StepState.DONE, StepState.SKIPPED))
    return finished, len(steps)


def as_json(data: Any) -> str:
    """The ``--json`` document: the API's own keys, sorted, so scripts can rely on them."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
