"""A client of the contest API (``contestkit server`` or any server speaking the 2018 REST paths).

Every failure becomes a ``ContestkitError`` whose message is one sentence with the HTTP status (when
there is one) and what to do: a user never sees a traceback or "Error: None". The server's own
``detail`` sentence is used when it sent one; otherwise the status decides the advice. A ``detail``
that only repeats the status's reason phrase ("Not Found", what any FastAPI/Starlette app answers
for an unknown path) says nothing, so it counts as none.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import requests

from contestkit.client.credentials import DEVICE_COOKIE, ServerLogin, normalize_server
from contestkit.errors import ContestkitError, NotFoundError

DEFAULT_TIMEOUT = 30.0
# `jobs()` asks for the team's job list this many at a time (the server answers at most 1,000).
# Why: an unpaged status/all makes the server read and send the team's whole history in one
# answer, which grows with the team; the 2018 client, which never pages, still gets every job.
JOBS_PAGE = 100

_ADVICE = {
    400: "the request was not understood; check the command's arguments",
    401: "log in again with `contestkit login`",
    403: "your team is not allowed to do that",
    404: "it does not exist, or the server URL is not a contest server (check `contestkit login --server`)",
    405: "the server URL is probably not a contest server; check `contestkit login --server`",
    409: "it conflicts with the job's current state; check `contestkit jobs`",
    413: "the request is too large",
    422: "check the command's arguments",
    429: "too many attempts; wait a few minutes and try again",
    500: "the contest server failed; try again, and tell the organisers if it persists",
    502: "the contest server is down or restarting; try again in a minute",
    503: "the contest server is unavailable or misconfigured; try again later or tell the organisers",
    504: "the contest server did not answer in time; try again in a minute",
}


class ApiError(ContestkitError):
    """The server answered with an error status; ``status`` keeps it for callers that branch on it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NotFoundErrorApi(ApiError, NotFoundError):
    """A 404 from the API (no such job, no job yet)."""


def _detail(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail.strip():
        return detail.strip()
    if isinstance(detail, list) and detail:  # FastAPI's default validation errors
        first = detail[0]
        if isinstance(first, dict):
            return f"{'.'.join(str(p) for p in first.get('loc', []))}: {first.get('msg', 'invalid')}"
    return None


def _says_nothing(detail: str, response: requests.Response) -> bool:
    """Whether ``detail`` is just the status's reason phrase, e.g. FastAPI's ``{"detail": "Not Found"}``."""
    words = detail.rstrip(".!").strip().lower()
    phrases = {(response.reason or "").strip().lower()}
    try:
        phrases.add(HTTPStatus(response.status_code).phrase.lower())
    except ValueError:
        pass
    return words in phrases


def error_for(response: requests.Response, action: str) -> ApiError:
    """One sentence for a failed response: what failed, the status, and the server's words or advice."""
    status = response.status_code
    detail = _detail(response)
    if detail and _says_nothing(detail, response):
        detail = None
    if detail:
        sentence = detail if detail.endswith((".", "!", "?")) else detail + "."
        message = f"{action} failed (HTTP {status}): {sentence}"
    else:
        advice = _ADVICE.get(status) or (
            "the contest server failed; try again later" if status >= 500 else "check the command and try again"
        )
        reason = f" {response.reason}" if response.reason else ""
        message = f"{action} failed (HTTP {status}{reason}): {advice}."
    cls = NotFoundErrorApi if status == 404 else ApiError
    return cls(message, status)


class ContestClient:
    """Talks to one contest server with a session cookie or a bearer token."""

    def __init__(
        self,
        server: str,
        *,
        cookies: dict[str, str] | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.server = normalize_server(server)
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["User-Agent"] = "contestkit"
        if cookies:
            self.http.cookies.update(cookies)
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_login(cls, login: ServerLogin | None) -> ContestClient:
        """A client acting for the stored login; not logged in is an error that says how to log in."""
        if login is None:
            raise ContestkitError("Not logged in: run `contestkit login --server URL` first.")
        return cls(login.server, cookies=login.cookies, token=login.token)

    # -- plumbing --

    def _request(self, method: str, path: str, action: str, **kwargs: Any) -> requests.Response:
        url = self.server + path
        try:
            response = self.http.request(method, url, timeout=self.timeout, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise ContestkitError(
                f"{action} failed: the TLS certificate of {self.server} was not accepted ({_short(exc)}); "
                "check the URL, or set REQUESTS_CA_BUNDLE to your CA bundle."
            ) from None
        except requests.exceptions.Timeout:
            raise ContestkitError(
                f"{action} failed: {self.server} did not answer within {self.timeout:.0f} s; "
                "check that the contest server is running and try again."
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise ContestkitError(
                f"{action} failed: could not reach the contest server at {self.server} ({_short(exc)}); "
                "check the address (`contestkit login --server URL`) and that the server is running."
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ContestkitError(f"{action} failed: {_short(exc)}; check the server URL.") from None
        if response.status_code >= 400:
            raise error_for(response, action)
        return response

    def _json(self, method: str, path: str, action: str, **kwargs: Any) -> Any:
        response = self._request(method, path, action, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ContestkitError(
                f"{action} failed: {self.server}{path} did not answer with JSON (HTTP {response.status_code}); "
                "is the server URL that of a contest server?"
            ) from None

    # -- the API --

    def login(self, email: str, password: str, *, device_cookie: str | None = None) -> dict[str, Any]:
        """Log in; the session cookie stays on this client (``cookies()`` returns it for saving).

        ``device_cookie``: the one this server gave this client for ``email`` before; sent, it keeps
        the login open while a stranger's guesses have the account throttled (``device_cookie()``
        returns the one to keep afterwards)."""
        if device_cookie:
            self.http.cookies.set(DEVICE_COOKIE, device_cookie)
        document = self._json("POST", "/rest/login", "Logging in", json={"email": email, "password": password})
        if not self.http.cookies:
            raise ContestkitError(f"Logging in to {self.server} returned no session cookie; is it a contest server?")
        return document if isinstance(document, dict) else {}

    def cookies(self) -> dict[str, str]:
        return {cookie.name: cookie.value or "" for cookie in self.http.cookies}

    def device_cookie(self) -> str | None:
        """The device cookie this client holds now (the server's new one after a first login)."""
        return next((c.value for c in self.http.cookies if c.name == DEVICE_COOKIE and c.value), None)

    def logout(self) -> None:
        self._request("POST", "/rest/logout", "Logging out")

    def user(self) -> dict[str, Any]:
        return self._json("GET", "/rest/user", "Getting your team's registry")

    def registry_repositories(self) -> dict[str, Any]:
        """The team's repositories and tags (the server reads the registry's catalog; teams may not)."""
        return self._json("GET", "/rest/registry/repositories", "Listing your team's registry")

    def start_job(self, tag: str, digest: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"tag": tag}
        if digest:
            body["digest"] = digest
        return self._json("POST", "/rest/job/start", f"Starting a job for {tag}", json=body)

    def job(self, job_id: int | None = None) -> dict[str, Any]:
        path = "/rest/job/status" if job_id is None else f"/rest/job/status/{job_id}"
        what = "your latest job" if job_id is None else f"job {job_id}"
        return self._json("GET", path, f"Getting {what}")

    def jobs(self, limit: int | None = None, before: int | None = None) -> list[dict[str, Any]]:
        """The team's jobs, newest first; ``limit``/``before`` ask for one page (see the server's
        ``all_jobs``). Without ``limit``, every job, fetched ``JOBS_PAGE`` at a time."""
        if limit is not None:
            return self._jobs_page(limit, before)
        listing: list[dict[str, Any]] = []
        while True:
            page = self._jobs_page(JOBS_PAGE, before)
            listing += page
            if len(page) < JOBS_PAGE or not isinstance(page[-1].get("id"), int):
                return listing
            before = page[-1]["id"]

    def _jobs_page(self, limit: int, before: int | None) -> list[dict[str, Any]]:
        params = {"limit": limit, **({"before": before} if before is not None else {})}
        return self._json("GET", "/rest/job/status/all", "Listing your jobs", params=params)

    def kill(self, job_id: int | None = None) -> dict[str, Any]:
        path = "/rest/job/kill" if job_id is None else f"/rest/job/kill/{job_id}"
        return self._json("POST", path, "Cancelling " + ("your job" if job_id is None else f"job {job_id}"))

    def restart(self, job_id: int | None = None) -> dict[str, Any]:
        path = "/rest/job/restart" if job_id is None else f"/rest/job/restart/{job_id}"
        return self._json("POST", path, "Restarting " + ("your latest job" if job_id is None else f"job {job_id}"))

    def select(self, job_id: int) -> dict[str, Any]:
        return self._json("POST", f"/rest/job/select/{job_id}", "Choosing the submission for the final")

    def leaderboard(self, level: str | None = None) -> dict[str, Any]:
        params = {"level": level} if level else None
        return self._json("GET", "/rest/leaderboard", "Getting the leaderboard", params=params)

    def final_leaderboard(self) -> dict[str, Any]:
        """The published final ranking (a 404 with "not published yet" before the host publishes it)."""
        return self._json("GET", "/rest/leaderboard/final", "Getting the final results")

    def contest(self) -> dict[str, Any] | None:
        """The contest's name, phase and levels; None from a server too old to say (no /rest/contest)."""
        try:
            return self._json("GET", "/rest/contest", "Getting the contest's phase")
        except NotFoundErrorApi:
            return None

    def check_start(self) -> bool:
        """Ask whether a submission would be taken now (window, running job, quota): raises the server's
        refusal as ``ApiError``; False from a server too old to answer (no /rest/job/check)."""
        try:
            self._json("GET", "/rest/job/check", "Submitting")
        except NotFoundErrorApi as missing:
            if "(HTTP 404 Not Found)" in str(missing):  # the route's absence, not a refusal
                return False
            raise
        return True

    def create_token(self, name: str | None = None, expires_in_days: float | None = None) -> dict[str, Any]:
        return self._json(
            "POST", "/rest/token", "Creating an API token", json={"name": name, "expires_in_days": expires_in_days}
        )

    def tokens(self) -> list[dict[str, Any]]:
        return self._json("GET", "/rest/tokens", "Listing your API tokens")

    def revoke_token(self, token_id: int) -> None:
        self._request("DELETE", f"/rest/token/{token_id}", f"Revoking API token {token_id}")

    def latest_job(self) -> dict[str, Any] | None:
        """The team's latest job, or None when it has none yet (not an error: nothing was submitted)."""
        try:
            return self.job(None)
        except NotFoundErrorApi as missing:
            # A 404 also means "not a contest server"; only an empty job list means "no job yet".
            try:
                listing = self.jobs(limit=1)
            except ContestkitError:
                raise missing from None
            if listing == []:
                return None
            raise

    def results(self, job_id: int, attempt: int | None = None) -> dict[str, Any]:
        """The result files of a job attempt (default: its latest) and its levels' directories."""
        params = {"attempt": attempt} if attempt is not None else None
        return self._json("GET", f"/rest/job/{job_id}/results", f"Listing the results of job {job_id}", params=params)

    def result_file(self, job_id: int, path: str, attempt: int | None = None) -> requests.Response:
        """One result file, streamed: read it with ``iter_content`` (the caller closes the response)."""
        params = {"attempt": attempt} if attempt is not None else None
        return self._request(
            "GET", f"/rest/job/{job_id}/results/{quote(path)}", f"Getting {path} of job {job_id}",
            params=params, stream=True,
        )  # fmt: skip


def _short(exc: BaseException) -> str:
    """The useful part of a requests/urllib3 error ("Connection refused"), not its repr chain."""
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip()
    for marker in ("Name or service not known", "Connection refused", "timed out", "certificate verify failed"):
        if marker in text:
            return marker
    return text.splitlines()[0][:200] if text else type(exc).__name__
