"""The client's private files and how HTTP failures reach the user (real files, real HTTP servers)."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from contestkit.client import credentials as sessions
from contestkit.client.api_client import ContestClient
from contestkit.errors import ContestkitError


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CONTESTKIT_TOKEN", raising=False)
    monkeypatch.delenv("CONTESTKIT_SERVER", raising=False)
    return tmp_path / "xdg"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_session_and_credentials_are_private_files_under_xdg_config_home(config_home: Path):
    path = sessions.save_login(sessions.ServerLogin(server="http://h:1", cookies={"contestkit_session": "s3cret"}))
    assert path == config_home / "contestkit" / "session.json"
    assert _mode(path.parent) == 0o700 and _mode(path) == 0o600
    creds = sessions.RegistryCredentials(url="h:5000/alpha", username="alpha", password="pw", scheme="http")
    cred_path = sessions.save_registry_credentials(creds)
    assert _mode(cred_path) == 0o600
    assert sessions.load_registry_credentials() == creds
    assert creds.host == "h:5000" and creds.namespace == "alpha"
    loaded = sessions.load_login()
    assert loaded is not None and loaded.cookies == {"contestkit_session": "s3cret"}
    # Loosened by a copy or a backup restore: tightened again on the next read.
    path.chmod(0o644)
    sessions.load_login()
    assert _mode(path) == 0o600
    assert not list(path.parent.glob(".*.tmp"))  # atomic writes leave no temporary files
    sessions.clear_login()
    sessions.clear_registry_credentials()
    assert sessions.load_login() is None and sessions.load_registry_credentials() is None


def test_a_damaged_session_file_says_what_to_do(config_home: Path):
    path = config_home / "contestkit" / "session.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ContestkitError, match="delete it and run `contestkit login` again"):
        sessions.load_login()


def test_token_and_server_from_the_environment_for_scripts(config_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CONTESTKIT_TOKEN", "ck_abc")
    with pytest.raises(ContestkitError, match="set CONTESTKIT_SERVER too"):
        sessions.load_login()
    monkeypatch.setenv("CONTESTKIT_SERVER", "contest.example.org:8000/")
    loaded = sessions.load_login()
    assert loaded is not None and loaded.token == "ck_abc" and loaded.server == "http://contest.example.org:8000"
    client = ContestClient.from_login(loaded)
    assert client.http.headers["Authorization"] == "Bearer ck_abc"


def test_not_logged_in_is_a_sentence(config_home: Path):
    with pytest.raises(ContestkitError, match=r"Not logged in: run `contestkit login --server URL` first\."):
        ContestClient.from_login(sessions.load_login())


# -- a real HTTP server that answers like a broken or foreign server ------------------------------

ANSWERS: dict[str, tuple[int, str, str]] = {
    "/rest/job/status/1": (500, "text/plain", "Internal Server Error"),
    "/rest/job/status/2": (404, "text/html", "<html><body>Not Found</body></html>"),
    "/rest/job/status/3": (200, "text/html", "<html>a proxy login page</html>"),
    "/rest/job/status/4": (409, "application/json", json.dumps({"detail": "Job 4 is still running"})),
    "/rest/job/status/5": (
        422,
        "application/json",
        json.dumps({"detail": [{"loc": ["body", "tag"], "msg": "Field required"}]}),
    ),
    "/rest/job/status/6": (503, "application/json", json.dumps({"detail": None})),
    "/rest/job/status/7": (401, "application/json", "{}"),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/rest/job/status/8":  # no answer until the test is over: the client must give up
            self.server.release.wait(30)  # type: ignore[attr-defined]
        status, kind, body = ANSWERS.get(self.path, (404, "text/plain", "nope"))
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (the timeout test)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def odd_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.release.set()  # type: ignore[attr-defined]
    server.shutdown()


@pytest.mark.parametrize(
    ("job_id", "expected"),
    [
        (1, "Getting job 1 failed (HTTP 500 Internal Server Error): the contest server failed; try again"),
        (2, "Getting job 2 failed (HTTP 404 Not Found): it does not exist, or the server URL is not a contest server"),
        (3, "did not answer with JSON (HTTP 200); is the server URL that of a contest server?"),
        (4, "Getting job 4 failed (HTTP 409): Job 4 is still running."),
        (5, "Getting job 5 failed (HTTP 422): body.tag: Field required."),
        (6, "Getting job 6 failed (HTTP 503 Service Unavailable): the contest server is unavailable"),
        (7, "Getting job 7 failed (HTTP 401 Unauthorized): log in again with `contestkit login`."),
    ],
)
def test_every_http_failure_is_one_sentence_with_the_status(odd_server: str, job_id: int, expected: str):
    with pytest.raises(ContestkitError) as err:
        ContestClient(odd_server).job(job_id)
    message = str(err.value)
    assert expected in message
    assert "None" not in message and "Traceback" not in message and "\n" not in message


def test_unreachable_and_slow_servers(odd_server: str, free_port):
    with pytest.raises(ContestkitError) as err:
        ContestClient(f"127.0.0.1:{free_port()}").leaderboard()
    assert "could not reach the contest server" in str(err.value) and "Connection refused" in str(err.value)
    with pytest.raises(ContestkitError, match="did not answer within 1 s"):
        ContestClient(odd_server, timeout=1).job(8)
