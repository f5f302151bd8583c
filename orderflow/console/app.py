"""The console's web application (FastAPI on uvicorn, Jinja2 pages, one small script of its own, no CDN).

Every page needs a session; every form carries the session's CSRF token and a form id; every action is
checked on the server against the user's role; the commands go out on `orders.commands` (order entry on
`orders.submitted`) with the form id as command id, claimed in the read model first, so a double click or a
resubmitted form is sent once. Answers are read from the console's read model (event ids derive from the
command id)."""

import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from contracts import topics
from contracts.public import STATUSES
from orderflow import commands
from orderflow.console import entry, queues
from orderflow.console.auth import ALLOWED, DOING, Accounts, RateLimit, Session, csrf_ok, may
from orderflow.console.readmodel import Doc, ReadModel
from orderflow.lag import format_age

HERE = Path(__file__).parent
COOKIE = "orderflow_session"
LOGIN_COOKIE = "orderflow_login"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
OPEN = frozenset(STATUSES) - {"shipped", "delivered", "cancelled", "rejected", "invalid", "partially_shipped"}
log = structlog.get_logger("console")
Publish = Callable[[str, str, dict[str, Any]], Awaitable[None]]


@dataclass
class Console:
    """What the pages work with: the read model, the accounts, how messages are published, the stuck rule."""

    model: ReadModel
    accounts: Accounts
    publish: Publish
    thresholds: dict[str, float]
    secure_cookies: bool = True
    limiter: RateLimit = field(default_factory=RateLimit)


class Refused(Exception):
    """A request refused with a status code and a message for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def parse_age(raw: str) -> float:
    """`90s`, `30m`, `4h`, `2d` (or empty: 0) as seconds; ValueError naming the value."""
    raw = raw.strip()
    if not raw:
        return 0.0
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(raw[:-1]) * units[raw[-1]]
    except (KeyError, ValueError):
        raise ValueError(f"older than {raw!r}: give a number with s, m, h or d (e.g. 4h)") from None


def create_app(console: Console, lifespan: Callable[[FastAPI], Any] | None = None) -> FastAPI:
    """The console's ASGI application on `console`."""
    app = FastAPI(title="orderflow console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(age=format_age, queues=queues.QUEUES, may=may, quote=quote)

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.monotonic()
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
            # the path only: query strings may hold a searched customer name
            log.info("request", method=request.method, path=request.url.path, status=response.status_code,
                     ms=round((time.monotonic() - started) * 1000, 1))  # fmt: skip
        return response

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        session = await console.accounts.session(request.cookies.get(COOKIE, ""))
        return page(request, "error.html", session, status=exc.status, message=exc.message)

    def page(request: Request, name: str, session: Session | None, status: int = 200, **ctx: Any) -> Response:
        return templates.TemplateResponse(
            request, name, {"session": session, "user": session.user if session else None, **ctx}, status_code=status
        )

    async def signed_in(request: Request) -> Session:
        session = await console.accounts.session(request.cookies.get(COOKIE, ""))
        if session is None:
            raise Refused(401, "Please sign in.")
        return session

    async def guarded(request: Request, action: str) -> tuple[Session, FormData]:
        """The session and form of a POST that passed the CSRF check and the role check for `action`."""
        session = await signed_in(request)
        form = await request.form()
        if not csrf_ok(session, str(form.get("csrf") or "")):
            log.warning("csrf_refused", user=session.user.name, action=action)
            raise Refused(403, "This form has no valid CSRF token (it may be stale): reload the page and try again.")
        if not may(session.user.role, action):
            log.warning("role_refused", user=session.user.name, role=session.user.role, action=action)
            roles = ", ".join(sorted(ALLOWED[action]))
            raise Refused(403, f"Your role ({session.user.role}) may not {DOING[action]}; that needs one of: {roles}.")
        return session, form

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, error: str = "") -> Response:
        token = secrets.token_urlsafe(24)
        response = page(request, "login.html", None, login_csrf=token, error=error)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, secure=console.secure_cookies, samesite="strict")
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("username") or "").strip(), str(form.get("password") or "")
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        if not cookie or not secrets.compare_digest(cookie, str(form.get("csrf") or "")):
            raise Refused(403, "This sign-in form has no valid CSRF token: reload the page and try again.")
        address = request.client.host if request.client else "-"
        wait = console.limiter.blocked(name, address)
        if wait:
            log.warning("login_rate_limited", user=name)
            raise Refused(429, f"Too many failed sign-ins: try again in {int(wait) + 1} seconds.")
        session = await console.accounts.login(name, password)
        if session is None:
            console.limiter.failed(name, address)
            log.info("login_failed", user=name)
            return RedirectResponse("/login?error=1", status_code=303)
        log.info("login", user=name, role=session.user.role)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE, session.token, httponly=True, secure=console.secure_cookies, samesite="strict", max_age=12 * 3600
        )
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session = await signed_in(request)
        form = await request.form()
        if not csrf_ok(session, str(form.get("csrf") or "")):
            raise Refused(403, "This form has no valid CSRF token: reload the page and try again.")
        await console.accounts.logout(session.token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        session = await console.accounts.session(request.cookies.get(COOKIE, ""))
        if session is None:
            return RedirectResponse("/login", status_code=303)
        now = time.time()
        counts = {n: console.model.count(q, console.thresholds, now) for n, q in queues.QUEUES.items()}
        return page(request, "home.html", session, counts=counts)

    @app.get("/queues/{name}", response_class=HTMLResponse)
    async def queue(
        request: Request, name: str, channel: str = "", customer: str = "", older: str = "", after: str = ""
    ) -> Response:
        session = await signed_in(request)
        q = queues.QUEUES.get(name)
        if q is None:
            raise Refused(404, f"No queue {name!r}; the queues are {', '.join(queues.QUEUES)}.")
        try:
            filters = queues.Filters(channel.strip(), customer, parse_age(older))
            cursor = queues.parse_after(after)
        except ValueError as exc:
            raise Refused(400, str(exc)) from None
        rows, more = await console.model.page(q, filters, console.thresholds, cursor)
        return page(
            request, "queue.html", session, queue=q, rows=rows, more=more, now=time.time(),
            filters={"channel": channel, "customer": customer, "older": older}, paged=bool(after),
            channels=sorted({"web", "edi", *entry.KEYED}), thresholds=console.thresholds,
        )  # fmt: skip

    @app.get("/search", response_class=HTMLResponse)
    async def search(request: Request, q: str = "") -> Response:
        session = await signed_in(request)
        rows = await console.model.search(q)
        if len(rows) == 1:
            return RedirectResponse(f"/orders/{quote(rows[0]['_id'], safe=':')}", status_code=303)
        return page(request, "search.html", session, q=q, rows=rows, now=time.time())

    @app.get("/orders/{key:path}", response_class=HTMLResponse)
    async def order(request: Request, key: str, sent: str = "") -> Response:
        session = await signed_in(request)
        doc = await console.model.order(key)
        sent_doc = await console.model.sent_record(sent) if sent else None
        if doc is None and sent_doc is None:
            raise Refused(404, f"No order {key!r} known to the console (yet).")
        doc = doc or {"_id": key, "status": None, "since": 0.0}
        timeline = console.model.timeline(doc)
        answer = None
        if sent_doc is not None and sent_doc.get("kind") != "order.submitted":
            answer = console.model.answer(doc, commands.answer_ids(sent))
        values = entry.form_values(doc.get("submitted"))
        by_field, other = entry.reasons_by_field(doc.get("reasons") or [])
        known = set(values) | _form_fields(values)
        other += [m for f, ms in by_field.items() if f not in known for m in ms]
        return page(
            request, "order.html", session, order=doc, timeline=timeline, sent=sent_doc, answer=answer,
            now=time.time(), values=values, reasons=by_field, other_reasons=other, choices=entry.CHOICES,
            lines=entry.line_count(values), form_id=uuid.uuid4().hex, shipments=_shipments(timeline),
            open=doc.get("status") in OPEN, stamp=_stamp(doc),
            revision=int((doc.get("submitted") or {}).get("revision") or 0) + 1,
        )  # fmt: skip

    @app.get("/api/orders/{key:path}/stamp")
    async def stamp(request: Request, key: str) -> Response:
        await signed_in(request)
        doc = await console.model.order(key)
        return JSONResponse({"stamp": _stamp(doc) if doc else ""})

    @app.get("/entry", response_class=HTMLResponse)
    async def entry_form(request: Request, channel: str = "phone") -> Response:
        session = await signed_in(request)
        if not may(session.user.role, "enter"):
            raise Refused(403, f"Your role ({session.user.role}) may not {DOING['enter']}.")
        ref = f"{channel.upper()[:5]}-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3).upper()}"
        values = {"channel": channel, "channel_order_ref": ref, "currency": "CNY", "priority": "normal",
                  "payment_method": "bank_transfer", "ship_to.country": "CN", "lines[0].uom": "EA"}  # fmt: skip
        return page(
            request, "entry.html", session, values=values, reasons={}, other_reasons=[], choices=entry.CHOICES,
            lines=1, form_id=uuid.uuid4().hex, revision=1, error="",
        )  # fmt: skip

    @app.post("/entry")
    async def submit(request: Request) -> Response:
        session, form = await guarded(request, "enter")
        values = {k: str(v) for k, v in form.items() if k not in ("csrf", "form_id", "revision")}
        form_id = _form_id(form)
        try:
            revision = int(str(form.get("revision") or ""))
            if revision < 1:
                raise ValueError
        except ValueError:
            raise Refused(400, "revision must be a whole number from 1") from None
        try:
            body = entry.build_submission(form, session.user.name, revision)
        except entry.EntryError as exc:
            return page(
                request, "entry.html", session, status=422, values=values, reasons={}, other_reasons=[],
                choices=entry.CHOICES, lines=entry.line_count(values), form_id=form_id, revision=revision,
                error=str(exc),
            )  # fmt: skip
        key = f"{body['channel']}:{body['channel_order_ref']}"
        target = f"/orders/{quote(key, safe=':')}?sent=entry-{form_id}"
        existing = await console.model.order(key)
        if revision == 1 and existing is not None and await console.model.sent_record(f"entry-{form_id}") is None:
            raise Refused(409, f"An order {key!r} exists already: open it to correct it (a new revision).")
        record = {"kind": "order.submitted", "key": key, "revision": revision, "user": session.user.name}
        if await _send_once(console, f"entry-{form_id}", record, topics.ORDERS_SUBMITTED, key, body):
            log.info("order_entered", key=key, revision=revision, user=session.user.name)
        return RedirectResponse(target, status_code=303)

    async def act(request: Request, action: str, kind: str, fields: Callable[[FormData], dict[str, Any]]) -> Response:
        session, form = await guarded(request, action)
        key = str(form.get("key") or "")
        if ":" not in key:
            raise Refused(400, "key must be channel:channel_order_ref")
        form_id = _form_id(form)
        command_id = f"console-{form_id}"
        try:
            cmd = commands.build(kind, key, session.user.name, command_id=command_id, **fields(form))
        except commands.CommandError as exc:
            raise Refused(422, str(exc)) from None
        record = {"kind": kind, "key": key, "user": session.user.name}
        if await _send_once(console, command_id, record, topics.ORDERS_COMMANDS, key, cmd.model_dump(mode="json")):
            log.info("command_sent", kind=kind, command_id=command_id, key=key, user=session.user.name)
        return RedirectResponse(f"/orders/{quote(key, safe=':')}?sent={command_id}", status_code=303)

    @app.post("/act/review")
    async def review(request: Request) -> Response:
        def fields(form: FormData) -> dict[str, Any]:
            reason = str(form.get("reason") or "").strip()
            return {"decision": str(form.get("decision") or ""), "reasons": [reason] if reason else []}

        return await act(request, "review", "order.review-decision", fields)

    @app.post("/act/shortage")
    async def shortage(request: Request) -> Response:
        def fields(form: FormData) -> dict[str, Any]:
            choice = str(form.get("choice") or "")
            return {
                "choice": choice,
                "remainder": str(form.get("remainder") or "cancel") if choice == "ship_partial" else None,
                "substitute_sku": (str(form.get("substitute_sku") or "") or None) if choice == "substitute" else None,
            }

        return await act(request, "shortage", "order.shortage-decision", fields)

    @app.post("/act/priority")
    async def priority(request: Request) -> Response:
        def fields(form: FormData) -> dict[str, Any]:
            decision = str(form.get("decision") or "")
            if decision not in ("approve", "deny"):
                raise Refused(422, f"decision must be approve or deny, not {decision!r}")
            return {"approved": decision == "approve"}

        return await act(request, "priority", "order.priority-approval", fields)

    @app.post("/act/cancel")
    async def cancel(request: Request) -> Response:
        def fields(form: FormData) -> dict[str, Any]:
            return {"reason": str(form.get("reason") or "").strip() or "cancelled in the console"}

        return await act(request, "cancel", "order.cancel", fields)

    return app


def _form_id(form: FormData) -> str:
    form_id = str(form.get("form_id") or "")
    if not (16 <= len(form_id) <= 64 and form_id.isalnum()):
        raise Refused(400, "form_id is missing or malformed: reload the page and try again")
    return form_id


async def _send_once(console: Console, command_id: str, record: dict[str, Any], topic: str, key: str,
                     message: dict[str, Any]) -> bool:  # fmt: skip
    """Publish unless this command id was claimed before (a double click); the claim is dropped if publishing
    fails, so the person can try again."""
    if not await console.model.claim(command_id, {**record, "at": time.time()}):
        return False
    try:
        await console.publish(topic, key, message)
    except Exception:
        await console.model.release(command_id)
        raise Refused(503, "The message could not be published (Kafka unreachable?): try again.") from None
    return True


def _form_fields(values: dict[str, str]) -> set[str]:
    return (
        {f"customer.{f}" for f in entry.CUSTOMER}
        | {f"ship_to.{f}" for f in entry.SHIP_TO}
        | set(entry.TOP)
        | {f"special_requirements.{f}" for f in entry.SPECIAL}
        | {f"lines[{i}].{f}" for i in range(entry.line_count(values)) for f in entry.LINE}
    )


def _stamp(doc: Doc) -> str:
    return f"{doc.get('last_event')}-{(doc.get('submitted') or {}).get('revision')}"


def _shipments(timeline: list[Doc]) -> list[dict[str, Any]]:
    """Shipments and tracking from the statuses that announced them."""
    out: dict[str, dict[str, Any]] = {}
    for ev in timeline:
        details = ev.get("details") or {}
        sid = details.get("shipment_id")
        if not sid:
            continue
        ship = out.setdefault(sid, {"shipment_id": sid, "state": ev["status"]})
        ship["state"] = ev["status"]
        for k in ("carrier", "tracking_number", "lines", "kind"):
            if details.get(k):
                ship[k] = details[k]
    return list(out.values())


@asynccontextmanager
async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    """A lifespan that starts nothing (tests wire the console themselves)."""
    yield
