"""``mailonboard``: list, show, wait for, start, cancel and offboard onboardings; print the callback key.

Every command talks to the HTTP API (docs/api.md) with a function key or the operator's Entra token,
so it works the same against the local host and a deployment. Approving stays with the tenant admins
in their browser: the CLI has no command that decides.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from cli import render
from cli.api import (
    V1,
    Api,
    AuthMode,
    CliError,
    EntraAuth,
    ExitCode,
    FunctionKeyAuth,
    Sleep,
    TokenSource,
    entra_scope,
    retry_after,
)
from cli.vault import LINK_SIGNING_KEY_SECRET, read_callback_key
from onboarding.domain import CredentialType, Outcome

ENV = "MAILONBOARD_"


@dataclass
class Wiring:
    """What the CLI takes from the world; tests pass their own as ``CliRunner.invoke(obj=...)``."""

    transport: httpx.BaseTransport | None = None
    credential: TokenSource | None = None
    sleep: Sleep = time.sleep
    monotonic: Callable[[], float] = time.monotonic


@dataclass
class Session:
    """The global options, resolved once per invocation."""

    base_url: str | None
    auth_mode: AuthMode
    function_key: str | None = field(repr=False)
    api_app_id_uri: str | None
    disable_instance_discovery: bool
    json: bool
    wiring: Wiring
    out: Console
    err: Console
    _api: Api | None = None
    _credential: TokenSource | None = None

    def credential(self) -> TokenSource:
        if self.wiring.credential is not None:
            return self.wiring.credential
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            options: dict[str, Any] = {}
            if self.disable_instance_discovery:
                options["disable_instance_discovery"] = True
            self._credential = DefaultAzureCredential(**options)
        return self._credential

    def api(self) -> Api:
        if self._api is None:
            if not self.base_url:
                raise CliError(
                    f"no API base URL: pass --url or set {ENV}URL (the function app's https address)",
                    ExitCode.USAGE,
                )
            auth: httpx.Auth
            if self.auth_mode is AuthMode.KEY or (self.auth_mode is AuthMode.AUTO and self.function_key):
                if not self.function_key:
                    raise CliError(f"--auth key needs {ENV}FUNCTION_KEY", ExitCode.USAGE)
                auth = FunctionKeyAuth(self.function_key)
            else:
                if not self.api_app_id_uri:
                    raise CliError(
                        f"no credentials: set {ENV}FUNCTION_KEY, or {ENV}API_APP_ID_URI "
                        "(api://<API_CLIENT_ID>) to sign in with Entra ID",
                        ExitCode.USAGE,
                    )
                auth = EntraAuth(self.credential(), entra_scope(self.api_app_id_uri))
            self._api = Api(self.base_url, auth, transport=self.wiring.transport)
        return self._api

    def emit(self, data: Any, human: Callable[[], Any]) -> None:
        """``--json``: the document on stdout; otherwise what ``human()`` renders."""
        if self.json:
            typer.echo(render.as_json(data))
        else:
            self.out.print(human())

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


app = typer.Typer(
    name="mailonboard",
    help="Operate mailbox OAuth onboardings over the HTTP API (docs/cli.md).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # a traceback's locals could hold a key or a token
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def session(ctx: typer.Context) -> Session:
    return ctx.find_object(Session)  # type: ignore[return-value]


def handled(command: F) -> F:
    """One error policy for every command: a ``CliError`` is one line on stderr (and a JSON error
    document on stdout with ``--json``) and its exit code; the cause's text is never shown."""

    @functools.wraps(command)
    def run(ctx: typer.Context, *args: Any, **kwargs: Any) -> Any:
        state = session(ctx)
        try:
            return command(ctx, *args, **kwargs)
        except CliError as exc:
            if state.json:
                typer.echo(render.as_json(exc.to_json()))
            state.err.print(f"error: {exc.message}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(int(exc.exit_code)) from None
        finally:
            state.close()

    return run  # type: ignore[return-value]


@app.callback()
def main_options(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", envvar=f"{ENV}URL", help="The function app's base URL (e.g. http://127.0.0.1:7071)."
        ),
    ] = None,
    function_key: Annotated[
        str | None,
        typer.Option(
            "--function-key",
            envvar=f"{ENV}FUNCTION_KEY",
            help="The API's function key (API_FUNCTION_KEY); prefer the environment variable.",
            show_default=False,
        ),
    ] = None,
    auth: Annotated[
        AuthMode,
        typer.Option(envvar=f"{ENV}AUTH", help="auto: the function key when given, else an Entra token."),
    ] = AuthMode.AUTO,
    api_app_id_uri: Annotated[
        str | None,
        typer.Option(
            envvar=f"{ENV}API_APP_ID_URI",
            help="The API's application ID URI (api://<API_CLIENT_ID>) for Entra tokens.",
        ),
    ] = None,
    disable_instance_discovery: Annotated[
        bool,
        typer.Option(
            "--disable-instance-discovery",
            envvar=f"{ENV}DISABLE_INSTANCE_DISCOVERY",
            help="For a private authority (the local sandbox): skip Entra instance discovery.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output on stdout (the API's own keys).")
    ] = False,
) -> None:
    wiring = ctx.obj if isinstance(ctx.obj, Wiring) else Wiring()
    ctx.obj = Session(
        base_url=url,
        auth_mode=auth,
        function_key=function_key,
        api_app_id_uri=api_app_id_uri,
        disable_instance_discovery=disable_instance_discovery,
        json=as_json,
        wiring=wiring,
        out=Console(),
        err=Console(stderr=True),
    )


# ------------------------------------------------------------------------------------------- reading
@app.command("list")
@handled
def list_command(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option(help="Only these statuses (repeat or comma-separate): running, waiting, succeeded, ..."),
    ] = None,
    external_reference: Annotated[str | None, typer.Option(help="Only this externalReference.")] = None,
    created_from: Annotated[str | None, typer.Option(help="Created at or after (ISO 8601).")] = None,
    created_to: Annotated[str | None, typer.Option(help="Created before (ISO 8601).")] = None,
    page_size: Annotated[int, typer.Option(min=1, max=100, help="Items per API page.")] = 25,
    max_pages: Annotated[
        int,
        typer.Option(min=0, help="Stop after this many pages (0: all); the output names where to resume."),
    ] = 0,
    continuation_token: Annotated[
        str | None, typer.Option(help="Resume a listing where --max-pages stopped it.")
    ] = None,
) -> None:
    """List onboardings, filtered as the API allows, following its continuation pages."""
    state = session(ctx)
    params = {"pageSize": str(page_size)}
    statuses = [s.strip() for value in status or [] for s in value.split(",") if s.strip()]
    optional = {
        "status": ",".join(statuses),
        "externalReference": external_reference,
        "createdFrom": created_from,
        "createdTo": created_to,
        "continuationToken": continuation_token,
    }
    params.update({k: v for k, v in optional.items() if v})
    items: list[dict[str, Any]] = []
    token: str | None = None
    for number, page in enumerate(state.api().pages(params), start=1):
        items += page.get("items") or []
        token = page.get("continuationToken")
        if max_pages and number >= max_pages:
            break
    state.emit({"items": items, "continuationToken": token}, lambda: render.listing(items))
    if token and not state.json:
        state.err.print(f"more onboardings: resume with --continuation-token {token}", markup=False)


@app.command()
@handled
def show(ctx: typer.Context, onboarding_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Show one onboarding: its steps as a table, its mailboxes per state, errors and fixes."""
    state = session(ctx)
    view = state.api().view(onboarding_id)
    state.emit(view, lambda: render.onboarding(view))


@app.command()
@handled
def wait(
    ctx: typer.Context,
    onboarding_id: Annotated[str, typer.Argument(metavar="ID")],
    timeout: Annotated[float, typer.Option(min=0, help="Give up after this many seconds.")] = 3600,
) -> None:
    """Wait with a progress bar until the onboarding is final, polling as the API's Retry-After asks.

    Exits 0 when it succeeded, 10 when partial, 11 when rejected, expired, cancelled or failed."""
    state = session(ctx)
    view = _poll_until_final(state, f"{V1}/{onboarding_id}", f"wait {onboarding_id}", timeout, _view_progress)
    state.emit(view, lambda: render.onboarding(view))
    outcome = view.get("status")
    if outcome == Outcome.PARTIAL:
        raise typer.Exit(int(ExitCode.PARTIAL))
    if outcome != Outcome.SUCCEEDED:
        raise typer.Exit(int(ExitCode.UNSUCCESSFUL))


def _view_progress(view: dict[str, Any]) -> tuple[str, int, int]:
    done, total = render.steps_done(view)
    return render.progress_text(view), done, total


def _poll_until_final(
    state: Session,
    path: str,
    what: str,
    timeout: float,
    progress_of: Callable[[dict[str, Any]], tuple[str, int, int]],
) -> dict[str, Any]:
    """GET ``path`` until 200, sleeping what each answer's Retry-After says (202, or 429/503)."""
    api, wiring = state.api(), state.wiring
    give_up = wiring.monotonic() + timeout
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=state.err, disable=state.json, transient=True) as bar:
        task = bar.add_task(what, total=None)
        while True:
            response = api.poll(path, what)
            body = response.json() if response.content else {}
            if response.status_code == HTTPStatus.OK:
                return dict(body) if isinstance(body, dict) else {"result": body}
            if response.status_code == HTTPStatus.ACCEPTED and isinstance(body, dict) and body:
                description, done, total = progress_of(body)
                bar.update(task, description=description, completed=done, total=total or None)
            pause = retry_after(response)
            if wiring.monotonic() + pause > give_up:
                raise CliError(f"{what}: not finished after {timeout:g} s", ExitCode.TIMED_OUT)
            wiring.sleep(pause)


# ------------------------------------------------------------------------------------------- changing
@app.command()
@handled
def start(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="A request body as JSON (docs/api.md); '-' reads stdin.", allow_dash=True
        ),
    ] = None,
    tenant_id: Annotated[
        str | None, typer.Option(envvar=f"{ENV}TENANT_ID", help="The tenant (GUID).")
    ] = None,
    display_name: Annotated[str | None, typer.Option(help="The app's display name.")] = None,
    protocol: Annotated[list[str] | None, typer.Option(help="IMAP and/or POP (repeat).")] = None,
    mailbox: Annotated[list[str] | None, typer.Option(help="A mailbox address (repeat).")] = None,
    mailboxes_file: Annotated[Path | None, typer.Option(help="Mailbox addresses, one a line.")] = None,
    admin_email: Annotated[
        list[str] | None, typer.Option(help="An admin to ask for consent (repeat).")
    ] = None,
    consent_mode: Annotated[str | None, typer.Option(help="consent (default) or grant.")] = None,
    secret_lifetime_days: Annotated[int | None, typer.Option(help="1-730, default 180.")] = None,
    credential_type: Annotated[
        str | None, typer.Option(help="secret (default) or certificate (recommended).")
    ] = None,
    external_reference: Annotated[str | None, typer.Option(help="Your ticket or change number.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Send one so that retrying this command never starts a second onboarding."),
    ] = None,
    callback_url: Annotated[str | None, typer.Option(help="Where to POST the webhook events.")] = None,
) -> None:
    """Start an onboarding from a JSON file and/or options (options win); the API validates it."""
    state = session(ctx)
    body = _read_body(file)
    mailboxes = list(mailbox or []) + _read_lines(mailboxes_file)
    given: dict[str, Any] = {
        "tenantId": tenant_id,
        "displayName": display_name,
        "protocols": list(protocol) if protocol else None,
        "mailboxes": mailboxes or None,
        "adminEmails": list(admin_email) if admin_email else None,
        "consentMode": consent_mode,
        "secretLifetimeDays": secret_lifetime_days,
        "credentialType": credential_type,
        "externalReference": external_reference,
        "idempotencyKey": idempotency_key,
        "callbackUrl": callback_url,
    }
    body.update({k: v for k, v in given.items() if v is not None})
    accepted = state.api().start(body)
    state.emit(
        accepted,
        lambda: (
            f"{'Already started' if accepted.get('existing') else 'Started'} {accepted.get('id')}\n"
            f"  status: {accepted.get('statusUrl')}\n  next:   mailonboard wait {accepted.get('id')}"
        ),
    )


def _read_body(file: Path | None) -> dict[str, Any]:
    if file is None:
        return {}
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        body = json.loads(text)
    except OSError as exc:
        raise CliError(f"start: cannot read {file} ({exc.strerror})", ExitCode.FAILED) from None
    except json.JSONDecodeError as exc:
        raise CliError(f"start: {file} is not JSON (line {exc.lineno}: {exc.msg})", ExitCode.FAILED) from None
    if not isinstance(body, dict):
        raise CliError(f"start: {file} must hold a JSON object (the request body)", ExitCode.FAILED)
    return body


def _read_lines(file: Path | None) -> list[str]:
    if file is None:
        return []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CliError(f"start: cannot read {file} ({exc.strerror})", ExitCode.FAILED) from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@app.command()
@handled
def cancel(ctx: typer.Context, onboarding_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Ask a running onboarding to stop and undo what it created (409 when it already finished)."""
    state = session(ctx)
    state.api().cancel(onboarding_id)
    state.emit(
        {"id": onboarding_id, "cancelRequested": True},
        lambda: (
            f"Cancellation requested for {onboarding_id}: it stops at its next wait and undoes what it "
            f"created.\n  next: mailonboard wait {onboarding_id}"
        ),
    )


@app.command()
@handled
def offboard(
    ctx: typer.Context,
    onboarding_id: Annotated[str, typer.Argument(metavar="ID")],
    purge: Annotated[
        bool, typer.Option("--purge", help="Purge the deleted app too (no restore in 30 days).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return once the API accepted it.")] = False,
    timeout: Annotated[float, typer.Option(min=0, help="Give up waiting after this many seconds.")] = 3600,
) -> None:
    """Remove everything an onboarding made: FullAccess, the Exchange registration, the app, the secret.

    DELETE /api/v1/onboardings/{id}: 202 with Location (the onboarding's status) while it runs, polled
    until 200. Exits 11 when the offboarding failed and left something in place."""
    state = session(ctx)
    if not yes and not typer.confirm(
        f"Offboard {onboarding_id}? Its mailboxes lose FullAccess and its app and secret are deleted",
        err=True,
    ):
        raise CliError("offboard: not confirmed; nothing was changed", ExitCode.FAILED)
    api = state.api()
    response = api.offboard(onboarding_id, purge=purge)
    location = response.headers.get("Location")
    body = response.json() if response.content else {}
    if response.status_code == HTTPStatus.ACCEPTED:
        if no_wait or not location:
            document = {"id": onboarding_id, "state": "accepted", "statusUrl": location}
            state.emit(
                {**document, "offboarding": body.get("offboarding")},
                lambda: f"Offboarding of {onboarding_id} accepted\n  status: {location}",
            )
            return
        what = f"offboard {onboarding_id}"
        body = _poll_until_final(state, api.on_base(location), what, timeout, _offboard_progress)
    result = body.get("offboarding") or {}
    state.emit(
        {"id": onboarding_id, "state": "done", "statusUrl": location, "offboarding": result},
        lambda: render.offboarding(onboarding_id, result),
    )
    if result.get("status") == "failed":  # OffboardingStatus.FAILED (issue 11), not on this branch
        raise typer.Exit(int(ExitCode.UNSUCCESSFUL))


def _offboard_progress(body: dict[str, Any]) -> tuple[str, int, int]:
    """The offboarding part of the onboarding's status view (its own steps)."""
    part = body.get("offboarding") or {}
    done, total = render.steps_done(part)
    return "offboarding: " + render.progress_text(part), done, total


@app.command()
@handled
def rotate(
    ctx: typer.Context,
    onboarding_id: Annotated[str, typer.Argument(metavar="ID")],
    credential_type: Annotated[
        CredentialType | None,
        typer.Option(
            "--credential-type",
            help="Switch to this type: certificate (recommended) or secret. Default: keep the current one.",
        ),
    ] = None,
) -> None:
    """Start rotating an onboarding's credential: a new one, verified, stored as the vault secret's
    next version; the old one is removed after ROTATION_OVERLAP_HOURS (docs/operations.md).
    `--credential-type certificate` switches a client-secret onboarding to a certificate.

    Returns once the API accepted it (the overlap lasts hours): `show ID` follows its `rotation` part.
    A rotation already running is answered, not started twice (`existing`)."""
    state = session(ctx)
    body = state.api().rotate(onboarding_id, credential_type.value if credential_type else None)
    part = body.get("rotation") or {}
    state.emit(
        body,
        lambda: (
            f"Rotation of {onboarding_id} {'already running' if body.get('existing') else 'started'}"
            f" ({part.get('status', 'running')})\n  status: {body.get('statusUrl', '')}"
        ),
    )


@app.command()
@handled
def retry(ctx: typer.Context, onboarding_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Grant and verify again only the mailboxes that need attention (after the fix each one names).

    Returns once the API accepted it: `show ID` follows its `mailboxOperation` part. A retry already
    running is answered, not started twice (`existing`)."""
    state = session(ctx)
    body = state.api().retry(onboarding_id)
    part = body.get("mailboxOperation") or {}
    mailboxes = ", ".join(part.get("mailboxes") or [])
    state.emit(
        body,
        lambda: (
            f"Retry of {onboarding_id} {'already running' if body.get('existing') else 'started'}"
            f" ({part.get('status', 'running')})\n  mailboxes: {mailboxes}\n  status: {body.get('statusUrl', '')}"
        ),
    )


@app.command()
@handled
def mailboxes(
    ctx: typer.Context,
    onboarding_id: Annotated[str, typer.Argument(metavar="ID")],
    add: Annotated[list[str] | None, typer.Option("--add", help="A mailbox to add (repeatable).")] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="A mailbox to remove (repeatable).")
    ] = None,
) -> None:
    """Add mailboxes (the admins are emailed the list gaining FullAccess, then each is granted and
    verified) or remove some (FullAccess removed, then a login confirmed refused); one or the other.
    `show ID` follows its `mailboxOperation` part."""
    if bool(add) == bool(remove):
        raise typer.BadParameter("give --add or --remove (repeatable), not both")
    state = session(ctx)
    change, addresses = ("add", add) if add else ("remove", remove or [])
    body = state.api().change_mailboxes(onboarding_id, change, addresses)
    part = body.get("mailboxOperation") or {}
    state.emit(
        body,
        lambda: (
            f"{change.capitalize()} on {onboarding_id} {'already running' if body.get('existing') else 'started'}"
            f" ({part.get('status', 'running')})\n  mailboxes: {', '.join(part.get('mailboxes') or [])}"
            f"\n  status: {body.get('statusUrl', '')}"
        ),
    )


@app.command()
@handled
def diagnose(
    ctx: typer.Context,
    onboarding_id: Annotated[str, typer.Argument(metavar="ID")],
    timeout: Annotated[float, typer.Option(min=0, help="Give up waiting after this many seconds.")] = 600,
) -> None:
    """Check an onboarding's app link by link (app, service principal, credential, token roles,
    Exchange registration, FullAccess and protocol, login) and name the first broken one with its fix.

    Exits 11 when a link is broken or the diagnosis could not run."""
    state = session(ctx)
    api = state.api()
    location = api.diagnose(onboarding_id).headers.get("Location")
    if not location:
        raise CliError(f"diagnose {onboarding_id}: the API gave no Location", ExitCode.FAILED)
    report = _poll_until_final(
        state, api.on_base(location), f"diagnose {onboarding_id}", timeout, lambda _: ("diagnosing", 0, 0)
    )
    state.emit(report, lambda: render.diagnosis(report))
    if report.get("status") != "completed" or report.get("firstBroken"):
        raise typer.Exit(int(ExitCode.UNSUCCESSFUL))


# ------------------------------------------------------------------------------------------- the key
@app.command("callback-key")
@handled
def callback_key_command(
    ctx: typer.Context,
    vault_url: Annotated[
        str | None,
        typer.Option(envvar=f"{ENV}VAULT_URL", help="The app's Key Vault URI (the KEY_VAULT_URI setting)."),
    ] = None,
    secret_name: Annotated[str, typer.Option(help="The signing key's secret.")] = LINK_SIGNING_KEY_SECRET,
) -> None:
    """Print the callback signing key (hex) for webhook receivers, read from Key Vault as you.

    Needs the 'Key Vault Secrets User' role on the vault. The one command that prints a secret: to
    stdout only, never in an error."""
    state = session(ctx)
    if not vault_url:
        raise CliError(f"callback-key: pass --vault-url or set {ENV}VAULT_URL", ExitCode.USAGE)
    key = read_callback_key(vault_url, state.credential(), secret_name)
    if state.json:
        typer.echo(render.as_json({"callbackKeyHex": key}))
    else:
        typer.echo(key)


def main() -> None:
    app()
