"""The contest in a browser: the public leaderboard, a team's jobs, a job's page, the host's pages.

Server-rendered HTML (Jinja2, autoescaped: an agent can print anything and team names are free
text) and plain CSS; one small script updates a running job's progress by polling the JSON API, and
every page reads fine without it.

Why the pages call the API's own dependencies (``api.deps``: who is asking, signing in and out,
cancelling and restarting) and the library's functions for reading jobs: a page must allow exactly
what the API allows, and one place deciding it cannot drift from another. A page that refuses
answers with the status ``api.errors.STATUS_OF`` gives the refusal, as the API would. A team sees
only its own jobs and files (a guessed id is a 404, as in the API); file downloads are a fixed list
of names inside the level's results directory, resolved and checked to stay inside it.

Forms: every POST made with the session cookie carries a CSRF token, an HMAC of the session secret
(so it needs no storage and dies with the session), and is refused when ``Origin`` or
``Sec-Fetch-Site`` shows another origin (the same host on another port included: that is
"same-site" for the cookie's ``SameSite=Lax``). The sign-in form, made before there is a session,
uses a double-submit cookie instead.

The leaderboard is rebuilt only when the jobs change (see ``Leaderboard``), and its rendered table
is kept until then: the page costs the same on a seeded database as on an empty one.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import func, select
from starlette.status import HTTP_200_OK, HTTP_303_SEE_OTHER

from contestkit.env.scoring import plural, score_text
from contestkit.runs import results
from contestkit.runs.curves import episode_ends, histogram_svg, reward_svg
from contestkit.server.api import deps, documents
from contestkit.server.api.errors import retry_after, status_of
from contestkit.server.config import ServerConfig
from contestkit.server.contest import baselines, boardcache, final, leaderboards, phases, quotas
from contestkit.server.contest import overview as contest
from contestkit.server.errors import Forbidden, NotFound, NotLoggedIn, Refused
from contestkit.server.queue import operations
from contestkit.server.security import auth, limits
from contestkit.server.storage.db import ACTIVE, FAILED, QUEUED, RUNNING, TERMINAL, Database, Job, Team, Worker

WEB = Path(__file__).parent
CSRF_COOKIE = "contestkit_csrf"
CSRF_FIELD = "csrf"
FORM_LIMIT = 16 * 1024  # bytes: the largest form here is an email and a password
BOARD_PAGE_SIZE = 100
LOG_TAIL_LINES = 40
RECENT_FAILURES = 30

# The files of a level a team may download, by the names ``contestkit eval`` writes (nothing else,
# in particular not the agent's ``out/``, which it can fill with anything).
DOWNLOADS = (
    results.MONITOR,
    results.LOG,
    results.SUMMARY,
    results.AGENT_STDOUT,
    results.AGENT_STDERR,
    results.REMOTE_STDOUT,
    results.REMOTE_STDERR,
    results.REWARD_CURVE,
    results.BEST_VIDEO,
    results.BEST_POSTER,
    results.LAST_VIDEO,
    results.LAST_POSTER,
)
#: The rendered episodes a job page plays (record: true), each with its poster: (label, video, poster).
VIDEOS = (
    ("best episode", results.BEST_VIDEO, results.BEST_POSTER),
    ("last episode", results.LAST_VIDEO, results.LAST_POSTER),
)
_RECORDING = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.bk2$")

# Pages allow only this server's own styles and script; no inline script, no frames, no plugins.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "media-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# A downloaded file (an SVG opened on its own included) may do nothing at all.
FILE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox"


# -- formatting ---------------------------------------------------------------------------------


# The formatters take whatever a template hands them: the API's documents leave out unknown keys
# (the 2018 client tests ``'score' in job``), which a template sees as undefined, shown as a dash.


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fmt_time(stamp: Any) -> str:
    if not _number(stamp) or not stamp:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stamp))


def fmt_duration(seconds: Any) -> str:
    if not _number(seconds) or not math.isfinite(seconds):
        return "–"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min {seconds % 60} s"
    return f"{minutes // 60} h {minutes % 60} min"


def fmt_score(score: Any) -> str:
    return score_text(score) if _number(score) else "–"


def fmt_int(value: Any) -> str:
    return f"{value:,}" if _number(value) else "–"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(WEB / "templates")),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=fmt_time, duration=fmt_duration, score=fmt_score, count=fmt_int, plural=plural)
    return env


# -- CSRF and origins ---------------------------------------------------------------------------


def csrf_token(session_secret: str) -> str:
    """The form token of a session: an HMAC of its secret, so it needs no storage and dies with it."""
    return hmac.new(session_secret.encode("utf-8"), b"contestkit-csrf-v1", hashlib.sha256).hexdigest()


def same_origin(request: Request, public_url: str | None) -> bool:
    """Whether a browser says the request comes from a page of this very origin: the API's rule
    (``limits.foreign_origin``: ``Sec-Fetch-Site`` decides alone, else ``Origin`` must name this
    host and port or the public URL). A request with neither is not from a browser form, and the
    CSRF token alone decides."""
    return not limits.foreign_origin(request.scope.get("headers", []), request.scope, public_url)


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form (the pages' only kind); a larger body is not read past the limit."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return {}
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {key: values[0] for key, values in parsed.items()}


def _safe_next(target: str | None) -> str:
    """A path on this site to go to after signing in; anything else (``//evil``, a URL) is ``/jobs``."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/jobs"


# -- the leaderboard, kept until the jobs change -------------------------------------------------


@dataclass
class BoardRow:
    rank: int
    name: str
    score: float
    levels: list[float | None]
    finished: float | None
    submissions: int
    baseline: bool = False


@dataclass
class BoardData:
    levels: list[str]
    rows: list[BoardRow]
    built: float
    frozen: float | None = None  # the freeze moment once it passed: later jobs do not count
    html: dict[int, Markup] = field(default_factory=dict)


class Leaderboard:
    """The leaderboard's rows and rendered pages, rebuilt only when the jobs that rank change.

    A request costs nothing from the database while nothing changed. When this process wrote jobs
    (or every ``RECHECK`` seconds), a fingerprint of the jobs table is read (count, last finish,
    last queueing) and the rows are rebuilt only if it moved: a heartbeat or a progress write,
    which change no rank, cost one small query and no rebuild.
    """

    RECHECK = 2.0

    def __init__(self, database: Database, config: ServerConfig) -> None:
        self.database = database
        self.config = config
        self._fingerprint_seen: Any = None
        self._version: tuple[int, int] | None = None
        self._recheck_at = 0.0
        self._data: BoardData | None = None
        self._lock = threading.Lock()

    def _fresh(self, version: tuple[int, int]) -> bool:
        return self._data is not None and self._version == version and time.monotonic() < self._recheck_at

    def _fingerprint(self, session: Any) -> tuple[Any, ...]:
        count, finished, queued = session.execute(
            select(func.count(Job.id), func.max(Job.finished_at), func.max(Job.queued_at))
        ).one()
        try:
            levels_mtime = os.stat(self.config.levels_path).st_mtime_ns
        except OSError:
            levels_mtime = None
        frozen = phases.frozen_since(self.config, time.time())  # the freeze passing changes the board too
        return (count, finished, queued, levels_mtime, frozen)

    def get(self) -> BoardData:
        version = boardcache.writes_version()  # job and team writes of this server's processes
        if self._fresh(version):
            return self._data  # type: ignore[return-value]
        with self._lock:  # one thread looks (and rebuilds); the others wait for its result
            if self._fresh(version):
                return self._data  # type: ignore[return-value]
            with self.database.session() as session:
                fingerprint = self._fingerprint(session)
                if self._data is None or fingerprint != self._fingerprint_seen:
                    self._data = self._build(session)
                    self._fingerprint_seen = fingerprint
            self._version = version
            self._recheck_at = time.monotonic() + self.RECHECK
            return self._data

    def _build(self, session: Any) -> BoardData:
        levels = [level.task for level in self.config.levels()]
        public = leaderboards.public_board(session, self.config)  # the API's rules: ranking, freeze, baselines
        top = public["leaderboard"]
        ids = [row["job"] for row in top if row.get("job") is not None]
        per_job: dict[int, dict[str, float | None]] = {}
        for start in range(0, len(ids), 500):
            for job_id, game, state, score in session.execute(
                select(Worker.job_id, Worker.game, Worker.state, Worker.score).where(
                    Worker.job_id.in_(ids[start : start + 500])
                )
            ):
                per_job.setdefault(job_id, {})[f"{game}/{state}"] = score
        # Submissions are the team's leaderboard jobs: a hidden final job is not one, and counting it
        # would tell everyone that the final runs.
        submissions = dict(
            session.execute(
                select(Team.name, func.count(Job.id))
                .join(Job)
                .where(Job.phase == phases.PhaseKind.LEADERBOARD.value)
                .group_by(Team.name)
            ).all()
        )
        rows = [
            BoardRow(
                rank=rank,
                name=row["name"],
                score=row["score"],
                levels=[per_job.get(row.get("job") or -1, {}).get(task) for task in levels],
                finished=row.get("finished"),
                submissions=int(submissions.get(row["name"], 0)),
                baseline=bool(row.get("baseline")),
            )
            for rank, row in enumerate(top, start=1)
        ]
        return BoardData(levels=levels, rows=rows, built=time.time(), frozen=public["frozen"])


# -- reading a job for its page ------------------------------------------------------------------


@dataclass
class LevelView:
    index: int
    doc: dict[str, Any]
    files: list[str]
    recordings: list[str]
    logs: list[tuple[str, str]]
    curve: Markup | None
    has_curve_file: bool

    @property
    def videos(self) -> list[tuple[str, str, str | None]]:
        """(label, video, poster or None) of the rendered episodes this level has."""
        return [(label, video, poster if poster in self.files else None)
                for label, video, poster in VIDEOS if video in self.files]  # fmt: skip

    @property
    def eta(self) -> str:
        return fmt_duration(self.doc.get("eta"))


def _level_dir(worker: Worker) -> Path | None:
    return Path(worker.results_dir) if worker.results_dir else None


class FileCache:
    """What a page derives from a results file (a log's tail, a curve), kept while the file is unchanged.

    A finished level's files never change, so its job page reads and draws them once; a running
    level's monitor.csv grows, and its curve is drawn again when it has.
    """

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, kind: str, compute: Callable[[Path], Any]) -> Any:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        key = (str(path), kind, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute(path)
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


_files = FileCache()
_LOGS = (
    ("agent stdout", results.AGENT_STDOUT),
    ("agent stderr", results.AGENT_STDERR),
    ("env stdout", results.REMOTE_STDOUT),
    ("env stderr", results.REMOTE_STDERR),
)


def _curve(title: str) -> Callable[[Path], Markup | None]:
    def draw(path: Path) -> Markup | None:
        episodes = results.read_monitor(path)  # drawn against timesteps, like the evaluation's own curve
        svg = reward_svg([r for r, _, _ in episodes], title=title, timesteps=episode_ends([n for _, n, _ in episodes]))
        return Markup(svg) if svg else None  # noqa: S704 - built by curves.py, which escapes its one text

    return draw


def level_view(worker: Worker, doc: dict[str, Any]) -> LevelView:
    directory = _level_dir(worker)
    files: list[str] = []
    recordings: list[str] = []
    logs: list[tuple[str, str]] = []
    curve = None
    try:
        entries = {entry.name: entry for entry in os.scandir(directory)} if directory is not None else {}
    except OSError:
        entries = {}
    if directory is not None and entries:
        files = [name for name in DOWNLOADS if name in entries and entries[name].is_file()]
        if results.RECORDINGS in entries and entries[results.RECORDINGS].is_dir():
            bk2 = directory / results.RECORDINGS
            recordings = sorted(p.name for p in bk2.iterdir() if _RECORDING.match(p.name) and p.is_file())[:200]
        for label, name in _LOGS:
            if name in files:
                text = _files.get(directory / name, "tail", lambda path: results.tail(path, LOG_TAIL_LINES))
                if text and text.strip():
                    logs.append((label, text))
        # The evaluation's own reward-curve.svg once it wrote it (at the level's end): an <img>, which
        # the browser caches; until then the curve is drawn here from monitor.csv as it grows.
        if results.MONITOR in files and results.REWARD_CURVE not in files:
            curve = _files.get(directory / results.MONITOR, "curve", _curve(worker.task))
    return LevelView(worker.idx, doc, files, recordings, logs, curve, results.REWARD_CURVE in files)


# -- the routes ---------------------------------------------------------------------------------


def install(app: FastAPI, services: deps.Services) -> Leaderboard:
    """Add the pages, their static files and the security headers to ``app``, which ``services`` serve."""
    database, config = services.database, services.config
    env = _environment()
    board = Leaderboard(database, config)
    router = APIRouter(include_in_schema=False)
    static = {
        "style.css": ((WEB / "static" / "style.css").read_bytes(), "text/css; charset=utf-8"),
        "job.js": ((WEB / "static" / "job.js").read_bytes(), "text/javascript; charset=utf-8"),
    }
    admins = {email.strip().lower() for email in config.admins}
    levels_run_on = services.scheduler.executor.name
    # The contest page's text, rendered once (server.yaml is read at start).
    site = {
        "contest_name": (config.name or contest.DEFAULT_NAME).strip(),
        "description": contest.render_markdown(config.description),
        "rules": contest.render_markdown(config.rules),
        "rules_url": config.rules_url,
        "ranking": phases.contest_plan(config).ranking.value,
    }
    hostname = socket.gethostname()

    def who(request: Request) -> Any | None:
        """The signed-in team, or None (pages are read by visitors too)."""
        if auth.SESSION_COOKIE not in request.cookies and "authorization" not in request.headers:
            return None
        try:
            return deps.caller(request)
        except NotLoggedIn:
            return None

    def is_admin(team: Any | None) -> bool:
        if team is None or not admins:
            return False
        with database.session() as session:
            email = session.scalar(select(Team.email).where(Team.id == team.team_id))
        return email is not None and email.lower() in admins

    def page(
        request: Request,
        template: str,
        team: Any | None,
        status: int = HTTP_200_OK,
        admin: bool | None = None,
        **context: Any,
    ) -> HTMLResponse:
        secret = request.cookies.get(auth.SESSION_COOKIE)
        html = env.get_template(template).render(
            team=team,
            admin=is_admin(team) if admin is None else admin,
            csrf=csrf_token(secret) if (team is not None and secret) else "",
            path=request.url.path,
            **site,
            **context,
        )
        headers = {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store" if team else "no-cache"}
        return HTMLResponse(html, status_code=status, headers=headers)

    def message(request: Request, team: Any | None, refusal: Refused, title: str) -> HTMLResponse:
        """The page that says why ``refusal``, with the status the API answers it with."""
        return page(request, "message.html", team, status=status_of(refusal), title=title, text=str(refusal))

    def signin_redirect(request: Request) -> RedirectResponse:
        return RedirectResponse("/signin?next=" + quote(request.url.path, safe="/"), status_code=HTTP_303_SEE_OTHER)

    def checked_post(request: Request, form: dict[str, str]) -> tuple[Any | None, HTMLResponse | None]:
        """The team behind a cookie POST whose origin and token are right; else the refusal page."""
        team = who(request)
        secret = request.cookies.get(auth.SESSION_COOKIE)
        if team is None or not secret:
            return None, message(request, None, NotLoggedIn("Sign in first, then try again."), "Not signed in")
        expected = csrf_token(secret)
        if not same_origin(request, config.server_url) or not hmac.compare_digest(form.get(CSRF_FIELD, ""), expected):
            return team, message(
                request,
                team,
                Forbidden(
                    "This form did not come from this site's own page (a missing or wrong token, or another "
                    "origin); open the page again and use its button."
                ),
                "Refused",
            )
        return team, None

    # -- static files --

    @router.get("/static/{name}")
    def static_file(name: str) -> Response:
        found = static.get(name)
        if found is None:
            return Response("not found", status_code=status_of(NotFound("not found")), media_type="text/plain")
        body, media = found
        return Response(body, media_type=media, headers={"Cache-Control": "public, max-age=3600"})

    # -- the public leaderboard --

    @router.get("/", response_class=HTMLResponse)
    def leaderboard_page(request: Request, page_number: str = Query("1", alias="page")) -> HTMLResponse:
        team = who(request)
        data = board.get()
        pages = max(1, math.ceil(len(data.rows) / BOARD_PAGE_SIZE))
        number = min(_url_number(page_number) or 1, pages)
        table = data.html.get(number)
        if table is None:
            rows = data.rows[(number - 1) * BOARD_PAGE_SIZE : number * BOARD_PAGE_SIZE]
            table = Markup(  # noqa: S704 - a template, autoescaped
                env.get_template("board_table.html").render(levels=data.levels, rows=rows, frozen=data.frozen)
            )
            data.html[number] = table
        with database.session() as session:
            phase = phases.current_phase(session, config, time.time())
        return page(
            request,
            "leaderboard.html",
            team,
            table=table,
            levels=data.levels,
            teams=len(data.rows),
            number=number,
            pages=pages,
            built=data.built,
            mine=team.team_name if team else None,
            phase=phase,
        )

    @router.get("/final", response_class=HTMLResponse)
    def final_page(request: Request) -> HTMLResponse:
        """The final ranking once published (the export's ranking, baselines marked); before, only that."""
        team = who(request)
        with database.session() as session:
            try:
                published = final.published_board(session, config)
            except NotFound:
                published = None
        return page(request, "final.html", team, board=published)

    @router.get("/levels/{level}", response_class=HTMLResponse)
    def level_page(request: Request, level: str) -> HTMLResponse:
        team = who(request)
        data = board.get()
        number = _url_number(level)  # counted from 1, as the board's L1, L2... and "level 1 of N"
        if number is None or number > len(data.levels):
            text = f"The level set has {plural(len(data.levels), 'level')}, numbered from 1."
            return message(request, team, NotFound(text), "No such level")
        index = number - 1
        scored = sorted(
            ((row.name, row.levels[index]) for row in data.rows if row.levels[index] is not None),
            key=lambda item: -(item[1] or 0.0),
        )
        mine = next((score for name, score in scored if team and name == team.team_name), None)
        svg = histogram_svg([s for _n, s in scored if s is not None], title=data.levels[index], mark=mine)
        return page(
            request,
            "level.html",
            team,
            index=index,
            task=data.levels[index],
            levels=data.levels,
            svg=Markup(svg) if svg else None,  # noqa: S704 - curves.py escapes the level's name
            scored=scored[:BOARD_PAGE_SIZE],
            count=len(scored),
            mine=mine,
        )

    # -- signing in and out --

    @router.get("/signin", response_class=HTMLResponse)
    def signin_page(request: Request, next: str | None = None) -> HTMLResponse:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        response = page(request, "signin.html", who(request), form_token=token, next=_safe_next(next), error=None)
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=config.secure_cookies())
        return response

    @router.post("/signin", response_class=HTMLResponse)
    async def signin(request: Request, form: dict[str, str] = Depends(read_form)) -> Response:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        target = _safe_next(form.get("next"))
        token_ok = bool(cookie) and hmac.compare_digest(form.get(CSRF_FIELD, ""), cookie)
        if not same_origin(request, config.server_url) or not token_ok:
            return message(request, None, Forbidden("Open the sign-in page again and sign in from it."), "Refused")
        response = RedirectResponse(target, status_code=HTTP_303_SEE_OTHER)
        try:
            # The API's own login: the same throttle, hash pool, device cookie and session.
            await deps.sign_in(request, response, form.get("email", ""), form.get("password", ""))
        except Refused as exc:
            status = status_of(exc)
            retry = retry_after(exc)
            error = str(exc)
            refused = page(request, "signin.html", None, status=status, form_token=cookie, next=target, error=error)
            if retry is not None:
                refused.headers["Retry-After"] = str(retry)
            return refused
        return response

    @router.post("/signout")
    def signout(request: Request, form: dict[str, str] = Depends(read_form)) -> Response:
        _team, refused = checked_post(request, form)
        if refused is not None:
            return refused
        response = RedirectResponse("/", status_code=HTTP_303_SEE_OTHER)
        deps.sign_out(request, response)
        return response

    # -- a team's jobs --

    @router.get("/jobs", response_class=HTMLResponse)
    def jobs_page(request: Request) -> Response:
        team = who(request)
        if team is None:
            return signin_redirect(request)
        with database.session() as session:
            jobs = operations.all_jobs(session, team.team_id)
            docs = [documents.job_document(job, stale_after=config.heartbeat_timeout) for job in jobs]
        return page(request, "jobs.html", team, jobs=docs)

    def load_job(team: Any, job_id: int | None) -> tuple[dict[str, Any], list[LevelView]] | None:
        if job_id is None:
            return None
        with database.session() as session:
            try:
                job = operations.get_job(session, team.team_id, job_id)
            except Refused:
                return None
            doc = documents.job_document(job, stale_after=config.heartbeat_timeout)
            views = [level_view(worker, wdoc) for worker, wdoc in zip(job.workers, doc["workers"], strict=True)]
        return doc, views

    @router.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(request: Request, job_id: str) -> Response:
        team = who(request)
        if team is None:
            return signin_redirect(request)
        found = load_job(team, _url_number(job_id))
        if found is None:
            return message(request, team, NotFound(f"Your team has no job {job_id}."), "No such job")
        doc, views = found
        return page(request, "job.html", team, job=doc, levels=views, active=doc["status"] in ACTIVE)

    def job_action(request: Request, job_text: str, form: dict[str, str], action: str) -> Response:
        team, refused = checked_post(request, form)
        if refused is not None:
            return refused
        job_id = _url_number(job_text)
        if job_id is None:
            return message(request, team, NotFound(f"Your team has no job {job_text}."), "No such job")
        function = deps.cancel_job if action == "cancel" else deps.restart_job
        try:
            function(services, team, job_id)
        except Refused as exc:
            title = "No such job" if isinstance(exc, NotFound) else f"Could not {action} job {job_id}"
            return message(request, team, exc, title)
        return RedirectResponse(f"/jobs/{job_id}", status_code=HTTP_303_SEE_OTHER)

    @router.post("/jobs/{job_id}/cancel")
    def cancel(request: Request, job_id: str, form: dict[str, str] = Depends(read_form)) -> Response:
        return job_action(request, job_id, form, "cancel")

    @router.post("/jobs/{job_id}/restart")
    def restart(request: Request, job_id: str, form: dict[str, str] = Depends(read_form)) -> Response:
        return job_action(request, job_id, form, "restart")

    @router.get("/jobs/{job_id}/levels/{index}/{name:path}")
    def level_file(request: Request, job_id: str, index: str, name: str) -> Response:
        team = who(request)
        if team is None:
            return signin_redirect(request)
        not_found = message(request, team, NotFound("This job has no such file."), "No such file")
        number, level = _url_number(job_id), _url_number(index, low=0)
        if number is None or level is None:
            return not_found
        with database.session() as session:
            try:
                job = operations.get_job(session, team.team_id, number)
            except Refused:
                return not_found
            worker = next((w for w in job.workers if w.idx == level), None)
            directory = _level_dir(worker) if worker is not None else None
        path = _download_path(directory, name)
        if path is None:
            return not_found
        inline = name in (results.REWARD_CURVE, *(n for _, video, poster in VIDEOS for n in (video, poster)))
        media = {
            results.REWARD_CURVE: "image/svg+xml",
            results.BEST_VIDEO: "video/mp4",
            results.LAST_VIDEO: "video/mp4",
            results.BEST_POSTER: "image/png",
            results.LAST_POSTER: "image/png",
            results.MONITOR: "text/csv; charset=utf-8",
            results.LOG: "text/csv; charset=utf-8",
            results.SUMMARY: "application/json",
        }.get(name, "application/octet-stream" if name.endswith(".bk2") else "text/plain; charset=utf-8")
        return FileResponse(
            path,
            media_type=media,
            filename=None if inline else f"job{number}-{level:02d}-{path.name}",
            content_disposition_type="inline" if inline else "attachment",
            headers={"Content-Security-Policy": FILE_CSP, "Cache-Control": "private, no-cache"},
        )

    # -- the host's pages --

    @router.get("/host", response_class=HTMLResponse)
    def host_page(request: Request) -> Response:
        team = who(request)
        if team is None:
            return signin_redirect(request)
        if not is_admin(team):
            return message(request, team, NotFound("There is no such page."), "Not found")
        overview = host_overview(database, config)
        registry = services.registry.health().document()
        return page(
            request, "host.html", team, admin=True, where=levels_run_on, hostname=hostname, registry=registry,
            executor_notices=services.scheduler.executor.notices(), **overview,
        )  # fmt: skip

    app.include_router(router)
    app.add_middleware(SecurityHeaders)
    return board


def _url_number(text: str, low: int = 1) -> int | None:
    """An id from a URL, or None for anything no row can have (the page is then a 404, as in the API)."""
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    number = int(text)
    return number if low <= number <= operations.MAX_ID else None


def _download_path(directory: Path | None, name: str) -> Path | None:
    """The file ``name`` of a level's results, or None: only the listed names, never outside the directory."""
    if directory is None:
        return None
    if name in DOWNLOADS:
        relative = Path(name)
    else:
        parts = name.split("/")
        if len(parts) != 2 or parts[0] != results.RECORDINGS or not _RECORDING.match(parts[1]):
            return None
        relative = Path(*parts)
    try:
        root = directory.resolve(strict=True)
        path = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def host_overview(database: Database, config: ServerConfig) -> dict[str, Any]:
    """What the host page shows: teams, the queue, running level-runs, recent failures with reasons."""
    with database.session() as session:
        counts = dict(session.execute(select(Job.team_id, func.count(Job.id)).group_by(Job.team_id)).all())
        active = {
            team_id: (job_id, status)
            for team_id, job_id, status in session.execute(
                select(Job.team_id, Job.id, Job.status).where(Job.status.in_(ACTIVE))
            )
        }
        teams = [
            {
                "name": t.name,
                "email": t.email,
                "namespace": t.namespace,
                "jobs": counts.get(t.id, 0),
                "active": active.get(t.id),
                "created": t.created_at,
            }
            for t in session.scalars(select(Team).order_by(Team.name))
        ]
        queue = [
            {"id": job.id, "team": name, "tag": job.tag, "queued": job.queued_at, "attempt": job.attempt}
            for job, name in session.execute(
                select(Job, Team.name).join(Team).where(Job.status == QUEUED).order_by(Job.queued_at, Job.id)
            )
        ]
        running = [
            {
                "job": job.id,
                "team": name,
                "task": worker.task,
                "started": worker.started_at,
                "progress": worker.progress,
                "timesteps": worker.timesteps,
                "eta": worker.eta,
                "runner": job.runner,
                "heartbeat_age": (time.time() - job.heartbeat_at) if job.heartbeat_at else None,
            }
            for worker, job, name in session.execute(
                select(Worker, Job, Team.name)
                .join(Job, Worker.job_id == Job.id)
                .join(Team, Job.team_id == Team.id)
                .where(Worker.status == RUNNING)
                .order_by(Job.id, Worker.idx)
            )
        ]
        failed_jobs = [
            {"job": job.id, "team": name, "when": job.finished_at, "what": "job", "error": job.error}
            for job, name in session.execute(
                select(Job, Team.name)
                .join(Team)
                .where(Job.status == FAILED)
                .order_by(Job.finished_at.desc().nulls_last())
                .limit(RECENT_FAILURES)
            )
        ]
        failed_levels = [
            {"job": job.id, "team": name, "when": worker.finished_at, "what": worker.task, "error": worker.error}
            for worker, job, name in session.execute(
                select(Worker, Job, Team.name)
                .join(Job, Worker.job_id == Job.id)
                .join(Team, Job.team_id == Team.id)
                .where(Worker.status == FAILED)
                .order_by(Worker.finished_at.desc().nulls_last())
                .limit(RECENT_FAILURES)
            )
        ]
        stamp = time.time()
        phase = phases.current_phase(session, config, stamp, host=True)
        quota = phases.contest_plan(config).leaderboard.quota
        wanted = baselines.emails(config)
        ids = {t.name: t.id for t in session.scalars(select(Team))}
        for entry in teams:
            entry["baseline"] = entry["email"] in wanted
            entry["quota"] = quotas.usage(session, ids[entry["name"]], quota, stamp)
    failures = sorted(failed_jobs + failed_levels, key=lambda f: -(f["when"] or 0.0))[:RECENT_FAILURES]
    return {
        "phase": phase,
        "warnings": phases.plan_warnings(config, stamp),
        "quota_text": quotas.describe(quota),
        "quota": quota,
        "baseline_teams": [t["name"] for t in teams if t["baseline"]],
        "missing_baselines": sorted(wanted - {t["email"] for t in teams}),
        "teams": teams,
        "queue": queue,
        "running": running,
        "failures": failures,
        "stale_after": config.heartbeat_timeout,
        "terminal": TERMINAL,
    }


class SecurityHeaders:
    """Headers a careful site sends on every answer; pages add their own content security policy.

    The API's answers get ``frame-ancestors 'none'`` as their policy (they are JSON and files, never
    framed; there is no Swagger UI page, see ``app``).
    """

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    )

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _value in headers}
                headers.extend(h for h in self.HEADERS if h[0] not in present)
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", b"frame-ancestors 'none'"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
