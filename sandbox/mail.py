"""Real IMAP and POP3 for the sandbox tenant: Dovecot, with the login decision made in Python.

Exchange Online lets an app read a mailbox over IMAP (993) or POP3 (995) with an OAuth token: SASL
XOAUTH2 or OAUTHBEARER, whether the (mailbox, token) pair is allowed depending on the token, the app's
roles, its Exchange service principal, FullAccess on that mailbox and the mailbox's protocol switches.
Here Dovecot speaks the protocols, and its dict passdb asks a dict server in this process
(``mail_auth.py``) with (protocol, mailbox, token) in the key; that server calls ``authorize`` - so the
decision is taken by the same sandbox state the Graph and Exchange stand-ins change.

Dovecot runs in the foreground as a child process with its own configuration, a fresh run directory,
unprivileged ports on 127.0.0.1 and implicit TLS on both ports. It works as root (login, auth and
mail processes then drop to unprivileged users, and mail processes chroot into the mail root so the
base directory's parents need not be readable by them) and as an ordinary user.
"""

from __future__ import annotations

import atexit
import grp
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from types import TracebackType

from sandbox.mail_auth import MAILBOX_CLOSED_GROUP, AuthDictServer, MailboxClosed

log = logging.getLogger(__name__)

Authorize = Callable[[str, str, str], "str | None"]
"""``authorize(mailbox, token, protocol)`` with protocol "imap" or "pop": None allows the login, a
string refuses it and says why (logged for whoever debugs the sandbox; the client sees only the
ordinary failure)."""

# What a refused client is shown. Exchange Online answers "NO AUTHENTICATE failed." and
# "-ERR Authentication failure: unknown user name or bad password."; Dovecot adds its own response
# code in front ("NO [CONTACTADMIN] ...", "-ERR [AUTH] ..."), which no setting removes.
IMAP_FAILURE_TEXT = "AUTHENTICATE failed."
POP_FAILURE_TEXT = "Authentication failure: unknown user name or bad password."

_SERVICE_TO_PROTOCOL = {"imap": "imap", "pop3": "pop"}
_FAILURE_TEXT = {"imap": IMAP_FAILURE_TEXT, "pop": POP_FAILURE_TEXT}

# Dovecot's own default username characters plus '+', which mailbox addresses use. Anything else
# (notably '/') is refused by Dovecot before the passdb runs, so a username can never name a path
# outside the mail root.
_USERNAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@+"
_ADDRESS_RE = re.compile(r"^[A-Za-z0-9.\-_+]+@[A-Za-z0-9.\-]+$")

GLOBAL_ACL_NAME = "sandbox-global-acl"
_DOVECOT_CANDIDATES = ("dovecot", "/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
_START_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3
_STOP_TIMEOUT_S = 5.0


# Servers still running when the interpreter exits (a test run interrupted before its teardown):
# stopped then, so no Dovecot outlives the process that owns its sandbox state.
_running: weakref.WeakSet[MailServer] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        server.stop()


class MailServerError(RuntimeError):
    """Dovecot is missing, failed to start, or the server is used in the wrong state."""


class MailServer:
    """Dovecot serving IMAP (implicit TLS) and POP3 (implicit TLS) on 127.0.0.1.

    Users are mailbox addresses; each has a maildir under ``base_dir/mail``. Only XOAUTH2 and
    OAUTHBEARER are offered; every login is decided by ``authorize``.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        cert_file: Path,
        key_file: Path,
        authorize: Authorize,
        imap_port: int = 0,
        pop_port: int = 0,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.cert_file = Path(cert_file).resolve()
        self.key_file = Path(key_file).resolve()
        self.authorize = authorize
        self.imap_port = imap_port
        self.pop_port = pop_port
        self._requested_ports = (imap_port, pop_port)
        self._identity = _Identity.for_current_process()
        self._process: subprocess.Popen[bytes] | None = None
        self._auth: AuthDictServer | None = None
        self._run_dir: Path | None = None
        self._lock = threading.Lock()
        self.mail_root.mkdir(parents=True, exist_ok=True)

    # -- mailboxes -------------------------------------------------------------------------------

    @property
    def mail_root(self) -> Path:
        return self.base_dir / "mail"

    @property
    def log_file(self) -> Path:
        """Dovecot's log (kept after stop; it never contains tokens: auth debugging stays off)."""
        return self.base_dir / "dovecot.log"

    def maildir(self, address: str) -> Path:
        _check_address(address)
        # Dovecot finds the home with %Lu: logins are case-insensitive like Exchange's.
        return self.mail_root / address.lower()

    def add_mailbox(self, address: str) -> None:
        """Create the mailbox's maildir with a welcome message; a no-op if it exists."""
        path = self.maildir(address)
        if path.exists():
            return
        staging = self.mail_root / f".new-{uuid.uuid4().hex}"
        for sub in ("cur", "new", "tmp"):
            (staging / sub).mkdir(parents=True)
        message = _welcome_message(address)
        name = f"{int(time.time())}.{uuid.uuid4().hex}.sandbox"
        (staging / "new" / name).write_bytes(message)
        self._identity.give_away(staging)
        try:
            # Atomic, so a login racing with add_mailbox sees either nothing or the whole maildir.
            staging.rename(path)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not path.exists():
                raise

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start Dovecot; return once both ports accept connections."""
        with self._lock:
            if self._process is not None:
                raise MailServerError("the mail server is already running")
            dovecot = _find_dovecot()
            for path in (self.cert_file, self.key_file):
                if not path.is_file():
                    raise MailServerError(f"TLS file not found: {path}")
            for attempt in range(_PORT_ATTEMPTS):
                try:
                    self._launch(dovecot)
                    _running.add(self)
                    return
                except MailServerError as exc:
                    self._shutdown()
                    # A port we picked was taken between picking and Dovecot binding it: pick again.
                    # A port the caller fixed is the caller's to free.
                    fixed_busy = any(f"127.0.0.1, {p})" in str(exc) for p in self._requested_ports if p)
                    busy = "Address already in use" in str(exc)
                    if not busy or fixed_busy or attempt + 1 == _PORT_ATTEMPTS:
                        raise
                except BaseException:
                    self._shutdown()
                    raise

    def _launch(self, dovecot: str) -> None:
        # A fresh, short run directory: Dovecot's Unix sockets live under it (108-byte limit).
        run_dir = self._run_dir = Path(tempfile.mkdtemp(prefix="sandbox-dovecot-"))
        # Traversable: Dovecot's unprivileged processes reach their sockets below it.
        run_dir.chmod(0o755)
        self._auth = AuthDictServer(run_dir / "auth-dict", self._decide)
        imap_port, pop_port = _pick_ports(self._requested_ports)
        # Not inside Dovecot's base_dir: Dovecot puts a "dovecot.conf" symlink there.
        config = run_dir / "etc" / "dovecot.conf"
        config.parent.mkdir()
        # Inside the mail root: as root, mail processes are chrooted there before the ACL plugin
        # reads it. Its name has no '@', so it is never a mailbox.
        acl_file = self.mail_root / GLOBAL_ACL_NAME
        acl_file.write_text(f"* group-override={MAILBOX_CLOSED_GROUP} \n")
        acl_file.chmod(0o644)
        dict_config = config.with_name("dict-auth.conf")
        dict_config.write_text(_render_dict_config(self._auth.socket_path))
        config.write_text(
            _render_config(
                base_dir=run_dir / "run",
                log_file=self.log_file,
                mail_root=self.mail_root,
                cert_file=self.cert_file,
                key_file=self.key_file,
                dict_config=dict_config,
                imap_port=imap_port,
                pop_port=pop_port,
                identity=self._identity,
            )
        )
        stderr = (run_dir / "stderr").open("wb")
        with stderr:
            self._process = subprocess.Popen(
                [dovecot, "-F", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                # Its own process group, so stop() can reach every child Dovecot forked.
                start_new_session=True,
            )
        self.imap_port, self.pop_port = imap_port, pop_port
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        assert self._process is not None and self._run_dir is not None
        # Dovecot writes master.pid only once its listeners are bound, so a port that answers before
        # then may be someone else's; after it, a port that answers is Dovecot's.
        pid_file = self._run_dir / "run" / "master.pid"
        deadline = time.monotonic() + _START_TIMEOUT_S
        pending = {self.imap_port, self.pop_port}
        while pending:
            if self._process.poll() is not None:
                raise MailServerError(
                    f"dovecot exited with status {self._process.returncode} during start-up: "
                    f"{self._diagnostics()}"
                )
            if time.monotonic() > deadline:
                raise MailServerError(
                    f"dovecot did not listen within {_START_TIMEOUT_S:.0f} s: {self._diagnostics()}"
                )
            if pid_file.exists():
                for port in list(pending):
                    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                        if probe.connect_ex(("127.0.0.1", port)) == 0:
                            pending.discard(port)
            if pending:
                time.sleep(0.005)

    def _diagnostics(self) -> str:
        parts = []
        if self._run_dir is not None:
            parts.append(_tail(self._run_dir / "stderr"))
        parts.append(_tail(self.log_file))
        return " | ".join(p for p in parts if p) or "no output"

    def stop(self) -> None:
        """Stop Dovecot and every process it started; remove its run directory. Idempotent."""
        with self._lock:
            self._shutdown()

    def _shutdown(self) -> None:
        _running.discard(self)
        process, self._process = self._process, None
        if process is not None:
            _terminate_group(process)
        auth, self._auth = self._auth, None
        if auth is not None:
            auth.close()
        run_dir, self._run_dir = self._run_dir, None
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
        self.imap_port, self.pop_port = self._requested_ports

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def process_group(self) -> int | None:
        """The process group of every process this server's Dovecot forked (benchmarks read their CPU)."""
        return self._process.pid if self.running and self._process is not None else None

    def __enter__(self) -> MailServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the decision ----------------------------------------------------------------------------

    def _decide(self, service: str, mailbox: str, token: str) -> str | None:
        protocol = _SERVICE_TO_PROTOCOL.get(service)
        if protocol is None:
            log.warning("mail login refused: unexpected Dovecot service %r for mailbox %s", service, mailbox)
            return IMAP_FAILURE_TEXT
        reason = self.authorize(mailbox, token, protocol)
        if reason is None:
            log.info("mail login allowed: protocol=%s mailbox=%s", protocol, mailbox)
            return None
        if isinstance(reason, MailboxClosed):
            log.info(
                "mail login allowed, mailbox refused: protocol=%s mailbox=%s reason=%s",
                protocol,
                mailbox,
                reason,
            )
            return reason
        log.info("mail login refused: protocol=%s mailbox=%s reason=%s", protocol, mailbox, reason)
        return _FAILURE_TEXT[protocol]


# -- users and configuration -----------------------------------------------------------------------


class _Identity:
    """Which users Dovecot's processes run as.

    As root: Dovecot refuses to run login processes as root and mail processes with uid 0, so login
    runs as dovenull, auth as dovecot (a non-root auth process is also what lets a mode-0 listener
    turn the anvil auth penalty off), and mail as nobody, chrooted into the mail root. As another
    user: everything runs as that user, without chroots.
    """

    def __init__(
        self,
        *,
        root: bool,
        internal_user: str,
        internal_group: str,
        login_user: str,
        mail_uid: int,
        mail_gid: int,
    ) -> None:
        self.root = root
        self.internal_user = internal_user
        self.internal_group = internal_group
        self.login_user = login_user
        self.mail_uid = mail_uid
        self.mail_gid = mail_gid

    @classmethod
    def for_current_process(cls) -> _Identity:
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            group = grp.getgrgid(os.getegid()).gr_name
            return cls(
                root=False,
                internal_user=me.pw_name,
                internal_group=group,
                login_user=me.pw_name,
                mail_uid=os.geteuid(),
                mail_gid=os.getegid(),
            )
        nobody = pwd.getpwnam("nobody")
        internal = _first_user("dovecot", "nobody")
        return cls(
            root=True,
            internal_user=internal.pw_name,
            internal_group=grp.getgrgid(internal.pw_gid).gr_name,
            login_user=_first_user("dovenull", "nobody").pw_name,
            mail_uid=nobody.pw_uid,
            mail_gid=nobody.pw_gid,
        )

    def give_away(self, path: Path) -> None:
        """Let the mail processes own what we created (only needed, and only possible, as root)."""
        if not self.root:
            return
        if path.is_dir():
            for dirpath, _dirs, files in os.walk(path):
                os.chown(dirpath, self.mail_uid, self.mail_gid)
                for name in files:
                    os.chown(os.path.join(dirpath, name), self.mail_uid, self.mail_gid)
        else:
            os.chown(path, self.mail_uid, self.mail_gid)


def _first_user(*names: str) -> pwd.struct_passwd:
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise MailServerError(f"none of the users {', '.join(names)} exists; Dovecot needs one as root")


def _render_dict_config(socket_path: Path) -> str:
    # The token is in the key (Dovecot expands %{password} to it): the dict server sees the mailbox,
    # the token and the protocol together, whatever the token's length.
    return f"""\
uri = proxy:{socket_path}:sandbox
default_pass_scheme = PLAIN
key passdb {{
  key = passdb/%{{service}}/%{{user}}/%{{password}}
  format = json
}}
passdb_objects = passdb
"""


def _render_config(
    *,
    base_dir: Path,
    log_file: Path,
    mail_root: Path,
    cert_file: Path,
    key_file: Path,
    dict_config: Path,
    imap_port: int,
    pop_port: int,
    identity: _Identity,
) -> str:
    if identity.root:
        # "/./" splits chroot and home: the mail process chroots into the mail root as root, then
        # drops to nobody, so it never needs to traverse base_dir's (possibly private) parents.
        home = f"{mail_root}/./%Lu"
        chroot_lines = f"valid_chroot_dirs = {mail_root}"
        login_chroot = ""
        acl_file = f"/{GLOBAL_ACL_NAME}"
    else:
        home = f"{mail_root}/%Lu"
        chroot_lines = ""
        # An ordinary user cannot chroot(); Dovecot would fail to start login processes.
        login_chroot = "  chroot =\n"
        acl_file = f"{mail_root}/{GLOBAL_ACL_NAME}"
    return f"""\
# Generated by sandbox/mail.py for one run; see docs/sandbox-mail.md.
base_dir = {base_dir}
state_dir = {base_dir}/state
instance_name = sandbox-mail-{base_dir.parent.name}
log_path = {log_file}
protocols = imap pop3
listen = 127.0.0.1
shutdown_clients = yes

ssl = required
ssl_cert = <{cert_file}
ssl_key = <{key_file}
ssl_min_protocol = TLSv1.2

# Exchange Online accepts only OAuth for app-only access; no plaintext mechanism is offered, so
# IMAP LOGIN and POP3 USER/PASS are refused.
auth_mechanisms = xoauth2 oauthbearer
disable_plaintext_auth = yes
# Hand authorize() the mailbox exactly as the client sent it (the default %Lu would lowercase it).
auth_username_format = %u
auth_username_chars = {_USERNAME_CHARS}
auth_failure_delay = 0
auth_verbose = no
auth_debug = no
auth_debug_passwords = no

default_internal_user = {identity.internal_user}
default_internal_group = {identity.internal_group}
default_login_user = {identity.login_user}
first_valid_uid = {min(identity.mail_uid, 500)}
first_valid_gid = 0
# Indexes in memory and no fsync: the stand-in's own cost per session only (a session opens the
# mailbox once; nothing here outlives the run). What a client sees is the same.
mail_location = maildir:~:INDEX=MEMORY
mail_fsync = never
{chroot_lines}
mail_max_userip_connections = 200

# A login the tenant allows while the app cannot open the mailbox (no FullAccess) gets an ACL group
# through the passdb's userdb_acl_groups field; the global ACL file grants that group no right on any
# mailbox: the session is authenticated, yet opening INBOX (IMAP EXAMINE, POP3 STAT) is refused.
mail_plugins = $mail_plugins acl
plugin {{
  acl = vfile:{acl_file}
}}

passdb {{
  driver = dict
  args = {dict_config}
}}
userdb {{
  driver = static
  args = uid={identity.mail_uid} gid={identity.mail_gid} home={home}
}}

# Login processes in Dovecot's high-performance mode: a few long-lived ones serve every connection
# (instead of a fork per connection), so they also resume TLS sessions as a mail service's front
# end does (one ticket key per process). Only the stand-in's own cost changes: what a client sees
# is the same, except that a resumed session skips the certificate (docs/sandbox-mail.md).
service imap-login {{
  service_count = 0
  process_min_avail = 1
{login_chroot}  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imap_port}
    ssl = yes
  }}
}}
service pop3-login {{
  service_count = 0
  process_min_avail = 1
{login_chroot}  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop_port}
    ssl = yes
  }}
}}
# Nobody may connect to the penalty socket, so the auth process runs without the anvil penalty
# (its growing delays after failures from one IP would slow tests down by seconds).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

# Mail processes kept for 1,000 sessions each rather than one (every mailbox has the same system
# user here), so a login does not fork and exec a new process: the stand-in's cost only.
service imap {{
  service_count = 1000
  process_min_avail = 2
}}
service pop3 {{
  service_count = 1000
  process_min_avail = 2
}}

protocol imap {{
  login_greeting = The Microsoft Exchange IMAP4 service is ready.
  # Exchange Online's list (docs/sandbox-facts.md MP-2) less AUTH=PLAIN, which is refused here;
  # Dovecot adds LOGINDISABLED and the AUTH= mechanisms itself before login.
  imap_capability = IMAP4 IMAP4rev1 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+
}}
protocol pop3 {{
  login_greeting = The Microsoft Exchange POP3 service is ready.
}}
"""


# -- helpers ---------------------------------------------------------------------------------------


def _check_address(address: str) -> None:
    if not _ADDRESS_RE.fullmatch(address) or ".." in address:
        raise ValueError(f"not a mailbox address the sandbox serves: {address!r}")


def _welcome_message(address: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Microsoft Outlook <no-reply@sandbox.invalid>"
    message["To"] = address
    message["Subject"] = "Welcome to your sandbox mailbox"
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="sandbox.invalid")
    message.set_content(
        f"This is the mailbox {address} of the sandbox tenant.\n"
        "If you can read this over IMAP or POP3, app-only access works.\n"
    )
    return bytes(message).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _find_dovecot() -> str:
    for candidate in _DOVECOT_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise MailServerError(
        "Dovecot is not installed (looked for 'dovecot' on PATH and in /usr/sbin); "
        "install the Debian packages dovecot-imapd and dovecot-pop3d"
    )


def _pick_ports(requested: tuple[int, ...]) -> tuple[int, ...]:
    """The requested ports, each 0 replaced by a free port none of the others uses."""
    # The kernel may hand out the same free port twice once the probing socket is closed; Dovecot
    # then refuses to start ("duplicate listener"), as it did once in CI.
    taken = {port for port in requested if port}
    picked = []
    for port in requested:
        while not port:
            candidate = _free_port()
            port = 0 if candidate in taken else candidate
        picked.append(port)
        taken.add(port)
    return tuple(picked)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _terminate_group(process: subprocess.Popen[bytes]) -> None:
    # SIGKILL to the whole group at once: a graceful SIGTERM takes Dovecot about a second, and
    # nothing in a sandbox run is worth it (maildirs are crash-safe; the run directory is removed).
    # The group holds every process Dovecot forked: login, auth, auth-worker and mail processes.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log.warning("dovecot (pid %s) did not exit after SIGKILL", process.pid)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " / ".join(text.strip().splitlines()[-lines:])


def _measure(logins: int = 50) -> None:
    """``python -m sandbox.mail``: start time and per-login latency on this machine."""
    import base64
    import imaplib
    import poplib
    import ssl
    import statistics

    import trustme

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
        cert.private_key_pem.write_to_path(str(folder / "key.pem"))
        tls = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
        server = MailServer(
            folder / "base",
            cert_file=folder / "cert.pem",
            key_file=folder / "key.pem",
            authorize=lambda _mailbox, token, _protocol: None if token == "ok" else "refused",
        )
        server.add_mailbox("bench@sandbox.example")
        began = time.perf_counter()
        server.start()
        started = time.perf_counter() - began
        sasl = b"user=bench@sandbox.example\x01auth=Bearer ok\x01\x01"
        imap_times, pop_times = [], []
        try:
            for _ in range(logins):
                client = imaplib.IMAP4_SSL("127.0.0.1", server.imap_port, ssl_context=tls)
                t0 = time.perf_counter()
                client.authenticate("XOAUTH2", lambda _: sasl)
                imap_times.append(time.perf_counter() - t0)
                client.logout()
                pop = poplib.POP3_SSL("127.0.0.1", server.pop_port, context=tls)
                t0 = time.perf_counter()
                pop._shortcmd("AUTH XOAUTH2 " + base64.b64encode(sasl).decode())  # type: ignore[attr-defined]
                pop_times.append(time.perf_counter() - t0)
                pop.quit()
        finally:
            began = time.perf_counter()
            server.stop()
            stopped = time.perf_counter() - began
    ms = 1000
    print(f"start {started * ms:.0f} ms, stop {stopped * ms:.0f} ms")
    for name, times in (("IMAP", imap_times), ("POP3", pop_times)):
        print(
            f"{name} AUTHENTICATE XOAUTH2 -> OK: median {statistics.median(times) * ms:.1f} ms, "
            f"max {max(times) * ms:.1f} ms over {len(times)} logins"
        )


if __name__ == "__main__":
    _measure()
