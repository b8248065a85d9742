"""The `mailbot` command: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mailbot.errors import MailbotError
from mailbot.forms import check_form, load_rules
from mailbot.forms.report import render_text
from mailbot.forms.workbook import ensure_safe_xml

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from mailbot.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    """The configuration of --config; without it the sandbox's, with the sandbox's database:
    the same default for every command (`run` without --config writes that database)."""
    from mailbot.config import load_settings
    from mailbot.transport.local import default_settings

    return load_settings(args.config) if args.config else default_settings()


def _existing_database(url: str, args: argparse.Namespace) -> Engine:
    """The database of a command that reads it (status, digest) or changes what is in it (mark):
    never created by it. A SQLite file not there yet means nothing has been received there."""
    from mailbot.store.db import open_database

    path = url.removeprefix("sqlite:///")
    if url.startswith("sqlite:///") and path and path != ":memory:" and not Path(path).exists():
        start = "mailbot run --config FILE" if args.config else "mailbot run"
        raise MailbotError(f"no database yet at {path}: nothing has been received there. "
                           f"`{start}` creates it; or name another with --config or --db")
    return open_database(url)


def _exit_status(checks: Sequence) -> int:
    """0 when every form is complete, 2 when a file is not readable as an order form, else 1."""
    if any(not c.is_order_form for c in checks):
        return 2
    return 0 if all(c.complete for c in checks) else 1


def cmd_check_form(args: argparse.Namespace) -> int:
    from mailbot.config import load_settings

    rules = load_rules(args.rules or (load_settings(args.config).files.form_rules if args.config else None))
    checks = [check_form(Path(f), rules=rules) for f in args.files]
    if args.json:
        out = [c.to_json() for c in checks]
        print(json.dumps(out[0] if len(out) == 1 else out, ensure_ascii=False, indent=2, default=str))
    else:
        print("\n\n".join(render_text(c) for c in checks))
    return _exit_status(checks)


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: a season of mail through a local sandbox, narrated."""
    from mailbot.demo import run_demo

    if args.forms:
        return cmd_forms_demo(args)
    # The staff page after the narration, for a person at a terminal (not for a script or CI).
    web = args.web if args.web is not None else sys.stdin.isatty() and sys.stdout.isatty()
    return run_demo(web=web)


def cmd_forms_demo(args: argparse.Namespace) -> int:
    """Check the sample forms (mailbot/forms/samples.py), filled from the shipped reference forms."""
    from mailbot.forms.samples import sample_forms

    rules = load_rules()
    for name, data in sample_forms(rules).items():
        print(render_text(check_form(data, name=name, rules=rules)), end="\n\n")
    return 0


def _timeline_line(event: dict) -> str:
    at = event["at"][:16].replace("T", " ")
    name = event["event"]
    if name == "received":
        docs = f" [{', '.join(event['documents'])}]" if event["documents"] else ""
        where = "+".join(event["mailboxes"])
        tail = f" problems: {', '.join(f'{f}:{c}' for f, c in event['problems'])}" if event.get("problems") else ""
        if event.get("quarantined"):
            tail += f" QUARANTINED: {event['quarantined']}"
        dup = " (copy already seen)" if event.get("duplicate") else ""
        return (f"{at}  received  {event.get('dossier') or '-':15} {event['kind'] or '-':10} {where}{docs}{dup}"
                f"  {event.get('subject', '')[:60]!r}{tail}")
    if name == "sent":
        cc = f" cc {', '.join(event['cc'])}" if event["cc"] else ""
        return (f"{at}  sent      {event.get('dossier') or '-':15} {event['purpose']:10} "
                f"to {', '.join(event['to'])}{cc}"
                f" [{event['language']}]  {event['subject'][:70]!r}")
    if name == "dossier":
        waits = ", ".join(f"{what} ({party})" for party, what in event["waiting"]) or "nothing"
        late = [f"{d['name']} due {d['due']}" for d in event["deadlines"] if d["late"]]
        return (f"{event['dossier']}  {event['project']!r}  stage {event['stage']}; waiting for {waits}"
                + (f"; LATE: {', '.join(late)}" if late else "") + f"; {len(event['came'])} mail(s)")
    return f"{at}  {name:9} " + json.dumps({k: v for k, v in event.items() if k not in ('at', 'event')},
                                           ensure_ascii=False)


def cmd_replay(args: argparse.Namespace) -> int:
    import datetime as dt
    import tempfile

    from mailbot.context import Context
    from mailbot.replay import replay
    from mailbot.store.db import open_database

    settings = _settings(args)
    until = None
    if args.until:
        try:
            until = dt.datetime.fromisoformat(args.until)
        except ValueError:
            raise MailbotError(f"--until {args.until!r} is not an ISO time such as 2027-02-01T09:00+01:00") from None
        until = until if until.tzinfo else until.replace(tzinfo=settings.process.zone)
    with tempfile.TemporaryDirectory(prefix="mailbot-replay-") as tmp:
        url = args.db or f"sqlite:///{tmp}/replay.sqlite"
        ctx = Context.load(settings, open_database(url), max_attempts=1)
        emit = (lambda e: print(json.dumps(e, ensure_ascii=False, default=str), flush=True)) if args.json \
            else (lambda e: print(_timeline_line(e), flush=True))
        paths = [Path(p) for p in args.paths]
        if missing := [str(p) for p in paths if not p.exists()]:
            raise MailbotError(f"no such file or folder: {', '.join(missing)}")
        replay(paths, ctx, emit, until)
        ctx.engine.dispose()
    return 0


def cmd_digest(args: argparse.Namespace) -> int:
    """Today's triage summary, from the database, for a person who wants it now."""
    import datetime as dt

    from sqlmodel import Session

    from mailbot.answers.digest import digest_context
    from mailbot.answers.render import Renderer
    from mailbot.calendar import load_calendars

    settings = _settings(args)
    engine = _existing_database(args.db or settings.database.url, args)
    calendar = load_calendars(settings.files.calendars)[settings.schedule.calendar]
    renderer = Renderer.for_settings(settings)
    now = dt.datetime.fromisoformat(args.at) if args.at else dt.datetime.now(dt.timezone.utc)
    now = now if now.tzinfo else now.replace(tzinfo=settings.process.zone)
    box = settings.mailboxes[args.team]
    with Session(engine) as session:
        rendered = renderer.render("digest", box.language,
                                   digest_context(session, args.team, now, calendar, settings.process.zone,
                                                  settings.web.public_url))
    if args.html:
        from mailbot.private_files import private_file

        private_file(Path(args.html))  # it names clients: 0600 when created here
        Path(args.html).write_text(rendered.html, encoding="utf-8")
        print(f"wrote {args.html}")
    else:
        print(f"Subject: {rendered.subject}\n\n{rendered.text}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon: on the configuration's servers, or on a local sandbox without --config."""
    import asyncio
    import signal

    def stop_while_starting(signum, frame):
        raise SystemExit(0)  # nothing in hand yet: a clean exit (the daemon takes SIGTERM over once it runs)

    signal.signal(signal.SIGTERM, stop_while_starting)

    from mailbot import logs
    from mailbot.config import load_settings
    from mailbot.daemon import Daemon

    logs.setup()
    if args.config:
        settings = load_settings(args.config)
        if args.shadow:
            settings = settings.model_copy(update={"answers": settings.answers.model_copy(update={"shadow": True})})
        return asyncio.run(Daemon(settings).serve())
    from mailbot.transport.local import sandbox_for, sandbox_help, sandbox_settings

    sandbox, data = sandbox_for(folder=Path(args.sandbox) if args.sandbox else None)
    with sandbox:
        settings = sandbox_settings(sandbox, data)
        # The staff page beside it, its demo user signed in at a click: on 8025, or any port free.
        settings = settings.model_copy(update={"web": settings.web.model_copy(update={"serve": True})})
        if args.shadow:
            settings = settings.model_copy(update={"answers": settings.answers.model_copy(update={"shadow": True})})
        daemon = Daemon(settings, web_any_port=True)
        print(sandbox_help(sandbox, settings), flush=True)
        if daemon.site is not None:
            from mailbot.web.server import address

            print(f"The staff page: {address(daemon.site)} (a click signs in the demo user {settings.web.demo_user})",
                  flush=True)
        return asyncio.run(daemon.serve())


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check a configuration before going live: one line per step, exit 1 when one fails."""
    from mailbot.config import load_settings
    from mailbot.doctor import Check, Status, diagnose, lines, summary

    checks: list[Check] = []

    def made() -> Iterator[Check]:
        try:
            settings = load_settings(args.config)
        except MailbotError as exc:
            yield Check(Status.FAIL, "config", str(exc), "fix the file (see config.example.toml)", "config")
            return
        yield Check(Status.OK, "config", f"{args.config} read", scope="config")
        yield from diagnose(settings, timeout=args.timeout, send_to=args.send_test)

    def kept(source: Iterator[Check]) -> Iterator[Check]:
        for check in source:
            checks.append(check)
            yield check

    for line in lines(kept(made())):
        print(line, flush=True)  # as it comes: a server that does not answer shows where it waits
    print(summary(checks))
    return 1 if any(c.status is Status.FAIL for c in checks) else 0


def cmd_status(args: argparse.Namespace) -> int:
    from mailbot.status import render_status, status

    settings = _settings(args)
    report = status(_existing_database(args.db or settings.database.url, args), settings)
    print(json.dumps(report, ensure_ascii=False, indent=2, default=str) if args.json else render_status(report))
    return 0


def cmd_mark(args: argparse.Namespace) -> int:
    """A person marks a step of a dossier done (its deadline is met), or confirms or rejects the
    changed payment details or contacts an order form waits with."""
    import datetime as dt
    import getpass

    from sqlmodel import Session, select

    from mailbot.calendar import load_calendars
    from mailbot.dossiers.process import mark_done
    from mailbot.store.models import Dossier

    settings = _settings(args)
    engine = _existing_database(args.db or settings.database.url, args)
    with Session(engine) as session:
        dossier = session.exec(select(Dossier).where(Dossier.reference == args.dossier.upper())).first()
        if dossier is None:
            raise MailbotError(f"no dossier {args.dossier}")
        print(mark_done(session, dossier, args.step, dt.datetime.now(dt.timezone.utc), args.by or getpass.getuser(),
                        settings=settings, calendars=load_calendars(settings.files.calendars)))
        session.commit()
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """The staff page on its own, on the configuration's database (the daemon may run apart)."""
    import asyncio
    import signal

    from mailbot.web.server import address, bind, serve

    settings = _settings(args)
    if args.host or args.port is not None:
        from pydantic import ValidationError

        update = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        try:
            web = settings.web.model_validate({**settings.web.model_dump(), **update})
        except ValidationError as exc:
            raise MailbotError(f"web: {exc.errors()[0]['msg']}") from None
        settings = settings.model_copy(update={"web": web})
    if settings.web.sign_in == "oidc" and settings.web.oidc is None:
        raise MailbotError("web: sign_in = \"oidc\" needs a [web.oidc] section (see config.example.toml)")
    engine = _existing_database(args.db or settings.database.url, args)
    sock = bind(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, engine, sock, stop)

    print(f"mailbot web: the staff page on {address(sock)} (Ctrl-C to stop)", flush=True)
    asyncio.run(main())
    sock.close()
    engine.dispose()
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    """Purge the personal data of dossiers closed or dormant for months, or say what would go."""
    import datetime as dt

    from sqlmodel import Session

    from mailbot.retention import render_report, run_retention

    settings = _settings(args)
    try:
        now = dt.datetime.fromisoformat(args.at) if args.at else dt.datetime.now(dt.timezone.utc)
    except ValueError:
        raise MailbotError(f"--at {args.at!r} is not an ISO time such as 2028-02-01T03:00+01:00") from None
    now = now if now.tzinfo else now.replace(tzinfo=settings.process.zone)
    engine = _existing_database(args.db or settings.database.url, args)
    with Session(engine) as session:
        print(render_report(run_retention(session, now, settings, apply=args.apply)))
    engine.dispose()
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    """An erasure request: the address removed from every dossier, mail and answer."""
    import datetime as dt

    from sqlmodel import Session, select

    from mailbot.erasure import forget, render_erasure
    from mailbot.store.models import Dossier

    settings = _settings(args)
    engine = _existing_database(args.db or settings.database.url, args)
    with Session(engine) as session:
        erasure = forget(session, args.address, dt.datetime.now(dt.timezone.utc), own=settings.own_addresses)
        references = {i: r for i, r in session.exec(select(Dossier.id, Dossier.reference)) if i is not None}
        if args.dry_run:
            session.rollback()
        else:
            session.commit()
    engine.dispose()
    print(render_erasure(erasure, references, applied=not args.dry_run))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailbot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-form", help="check ePayment order forms (.xlsx)")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--json", action="store_true", help="one JSON object per file")
    check.add_argument("--rules",
                       help="the order form's rules file (default: the configuration's, else the shipped one)")
    check.add_argument("--config", help="configuration file whose [files] form_rules to use")
    check.set_defaults(func=cmd_check_form)
    rep = sub.add_parser("replay", help="replay .eml files through the bot with a simulated clock")
    rep.add_argument("paths", nargs="+", metavar="PATH", help=".eml files or folders of them")
    rep.add_argument("--config", help="configuration file (default: the embedded sandbox configuration)")
    rep.add_argument("--db", help="database URL (default: a fresh temporary SQLite file)")
    rep.add_argument("--until", help="run the scheduled jobs up to this ISO time (no offset: process.timezone)")
    rep.add_argument("--json", action="store_true", help="one JSON object per line")
    rep.set_defaults(func=cmd_replay)
    run = sub.add_parser("run", help="run the bot (without --config: on a local sandbox)")
    run.add_argument("--config", help="configuration file (see config.example.toml)")
    run.add_argument("--shadow", action="store_true", help="send nothing to clients; show staff what would go")
    run.add_argument("--sandbox", metavar="DIR", help="without --config: keep the sandbox's mail and database here "
                     "(default ~/.local/state/mailbot/sandbox; as root /var/lib/mailbot/sandbox)")
    run.set_defaults(func=cmd_run)
    st = sub.add_parser("status", help="mailboxes, outbox, quarantine and deadlines, from the database")
    st.add_argument("--config", help="configuration file (default: the sandbox's, and its database)")
    st.add_argument("--db", help="database URL (default: the configuration's)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    doc = sub.add_parser("doctor", help="check a configuration's servers, database, rules and templates")
    doc.add_argument("--config", required=True, help="configuration file (see config.example.toml)")
    doc.add_argument("--send-test", metavar="ADDRESS", help="also send one plain test mail to ADDRESS")
    doc.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                     help="how long to wait for each server (default 10)")
    doc.set_defaults(func=cmd_doctor)
    mark = sub.add_parser("mark", help="mark a dossier's step done by hand (its deadline is met), or confirm or "
                                       "reject the changed payment details or contacts its order form waits with")
    mark.add_argument("dossier", help="the dossier reference, e.g. EPAY-2027-0042")
    mark.add_argument("step", choices=["prevalidated", "access_sent", "confirm-changes", "reject-changes"])
    mark.add_argument("--by", help="who marks or decides it (default: the user running the command)")
    mark.add_argument("--config", help="configuration file (default: the sandbox's, and its database)")
    mark.add_argument("--db", help="database URL (default: the configuration's)")
    mark.set_defaults(func=cmd_mark)
    web = sub.add_parser("web", help="serve the staff page: every dossier, its timeline, the steps a person takes")
    web.add_argument("--config", help="configuration file (default: the sandbox's, and its database); see [web]")
    web.add_argument("--db", help="database URL (default: the configuration's)")
    web.add_argument("--host", help="listen on this address (default: [web] host, 127.0.0.1)")
    web.add_argument("--port", type=int, help="listen on this port (default: [web] port, 8025)")
    web.set_defaults(func=cmd_web)
    dig = sub.add_parser("digest", help="print or write today's triage summary from the database")
    dig.add_argument("--team", choices=["worldline", "bosa"], default="worldline")
    dig.add_argument("--html", metavar="FILE", help="write the HTML version to FILE")
    dig.add_argument("--config", help="configuration file (default: the sandbox's, and its database)")
    dig.add_argument("--db", help="database URL (default: the configuration's)")
    dig.add_argument("--at", help="the summary as of this ISO time (default: now; no offset: process.timezone)")
    dig.set_defaults(func=cmd_digest)
    ret = sub.add_parser("retention", help="purge the personal data of dossiers closed or dormant for months")
    how = ret.add_mutually_exclusive_group(required=True)
    how.add_argument("--dry-run", action="store_true", help="print what would be purged, change nothing")
    how.add_argument("--apply", action="store_true", help="purge it (the daemon does this every day)")
    ret.add_argument("--config", help="configuration file (default: the embedded sandbox); see [retention]")
    ret.add_argument("--db", help="database URL (default: the configuration's)")
    ret.add_argument("--at", help="as of this ISO time (default: now; no offset: process.timezone)")
    ret.set_defaults(func=cmd_retention)
    fgt = sub.add_parser("forget", help="an erasure request: remove an e-mail address everywhere")
    fgt.add_argument("address", help="the address, in any case or Unicode form")
    fgt.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    fgt.add_argument("--config", help="configuration file (default: the embedded sandbox)")
    fgt.add_argument("--db", help="database URL (default: the configuration's)")
    fgt.set_defaults(func=cmd_forget)
    demo = sub.add_parser("demo", help="a season of sample mail through a local sandbox, narrated")
    demo.add_argument("--forms", action="store_true", help="only check the sample order forms (those of data/samples)")
    demo.add_argument("--web", action=argparse.BooleanOptionalAction, default=None,
                      help="then serve the staff page on the season's dossiers until Ctrl-C "
                           "(default: when run from a terminal)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ensure_safe_xml()
        return args.func(args)
    except MailbotError as exc:
        print(f"mailbot: {exc}", file=sys.stderr)
        return 2
