"""Whether the cluster enforces the level-runs' NetworkPolicy, checked at start by a probe pod.

Why: agents get no network only because the deny-all NetworkPolicy says so, and a NetworkPolicy is
only words unless the cluster's CNI enforces it (kubenet and flannel, for example, accept the object
and ignore it). The API server cannot tell, so the executor asks the network itself: at start it runs
one small pod labelled exactly like a level-run (so the policy selects it) that tries to open a TCP
connection. If the connection gets through, the policy is not enforced and an agent could reach the
network; the server then holds level-runs (jobs stay queued, nothing is lost) unless server.yaml's
``kubernetes:`` mapping says ``allow_unenforced_network_policy: true``, when it runs them with a
warning on every start and on ``/host``.

The probe's target is the cluster's own API server Service by default (``KUBERNETES_SERVICE_HOST`` is
in every pod's environment, so no DNS is needed, and it answers from the cluster's first second);
``network_probe_target`` names another ``HOST:PORT``. The server's own Service is not the default:
it has no ready endpoint while the server starts, and a refused connection would read as "enforced".
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contestkit.runtime.kubernetes import (
    NETWORK_POLICY_NAME,
    ClusterApi,
    api_reason,
    container_security,
    container_states,
    contest_selector,
    placement,
    render_network_policy,
    why_stuck,
)

if TYPE_CHECKING:
    from contestkit.server.executors.kubernetes_settings import KubernetesSettings

log = logging.getLogger("contestkit.server.executors.network_policy")

LABEL_PROBE = "contestkit.org/probe"
PROBE_CONTAINER = "probe"
REACHED_EXIT = 20  # the connection got through: the policy is not enforced
BLOCKED_EXIT = 21  # refused, dropped or unresolvable: the policy holds
CONNECT_TIMEOUT = 10
STATUS_FILE = "kubernetes-network-policy.json"  # in the data directory, for `contestkit server status`

# The probe's program (the remote-env image has Python): argv[1:3] are the target, empty for the API server.
PROBE_SCRIPT = (
    "import os, socket, sys\n"
    "host = sys.argv[1] or os.environ['KUBERNETES_SERVICE_HOST']\n"
    "port = int(sys.argv[2] or os.environ['KUBERNETES_SERVICE_PORT'])\n"
    "try:\n"
    f"    socket.create_connection((host, port), timeout={CONNECT_TIMEOUT}).close()\n"
    "except OSError as exc:\n"
    "    print('blocked:', host, port, exc)\n"
    f"    sys.exit({BLOCKED_EXIT})\n"
    "print('reached', host, port)\n"
    f"sys.exit({REACHED_EXIT})\n"
)


class Enforcement(str, Enum):
    """What the probe found out."""

    CHECKING = "checking"
    ENFORCED = "enforced"
    NOT_ENFORCED = "not-enforced"
    UNDECIDED = "undecided"  # the probe could not run or did not finish: not known to be safe


def probe_target(settings: KubernetesSettings) -> tuple[str, str]:
    """The probe's ``(host, port)``; empty strings mean the API server's Service from the pod's environment."""
    if not settings.network_probe_target:
        return "", ""
    host, _, port = settings.network_probe_target.rpartition(":")
    return host, port


def render_probe_pod(settings: KubernetesSettings, name: str) -> dict[str, Any]:
    """The probe pod: a level-run's labels (the deny-all policy selects it), placed where level-runs go."""
    host, port = probe_target(settings)
    user = settings.env_run_as_user if settings.env_run_as_user is not None else 1000
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": int(settings.start_timeout_seconds) + 60,
        "terminationGracePeriodSeconds": 1,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [
            {
                "name": PROBE_CONTAINER,
                "image": settings.remote_env_image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["python", "-c", PROBE_SCRIPT, host, port],
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "16Mi"},
                    "limits": {"cpu": "200m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
                },
                "securityContext": container_security(user),
            }
        ],
    }
    spec.update(placement(settings))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": {**contest_selector(settings), LABEL_PROBE: "network-policy"},
        },
        "spec": spec,
    }


def probe(api: ClusterApi, settings: KubernetesSettings, stop: threading.Event) -> tuple[Enforcement, str]:
    """Run the probe pod once: whether the policy is enforced, and what the probe saw, in a few words."""
    name = f"{settings.job_prefix}-network-probe-{secrets.token_hex(3)}"
    host, port = probe_target(settings)
    target = f"{host}:{port}" if host else "the cluster's API server"
    try:
        api.create_pod(render_probe_pod(settings, name))
    except Exception as exc:  # noqa: BLE001 - refused (admission, quota) or unreachable: one sentence
        return Enforcement.UNDECIDED, f"the probe pod was refused ({api_reason(exc)})"
    deadline = time.monotonic() + settings.start_timeout_seconds + CONNECT_TIMEOUT + 5
    why = "it did not finish"
    try:
        while not stop.wait(min(settings.poll_seconds, 1.0)):
            try:
                pod = api.read_pod(name)
            except Exception as exc:  # noqa: BLE001 - 429/5xx/timeout: look again
                log.debug("reading the probe pod %s: %s", name, exc)
                pod = {}
            if pod is None:
                return Enforcement.UNDECIDED, "the probe pod was deleted before it ended"
            terminated = container_states(pod).get(PROBE_CONTAINER, {}).get("terminated")
            if terminated is not None:
                code = terminated.get("exitCode")
                if code == REACHED_EXIT:
                    return Enforcement.NOT_ENFORCED, f"a probe pod labelled as a level-run reached {target}"
                if code == BLOCKED_EXIT:
                    return Enforcement.ENFORCED, f"a probe pod labelled as a level-run could not reach {target}"
                return Enforcement.UNDECIDED, f"the probe pod ended with exit status {code}"
            stuck = why_stuck(pod, None)
            why = stuck[0] if stuck else why
            if time.monotonic() > deadline:
                return (
                    Enforcement.UNDECIDED,
                    f"the probe pod did not end within {settings.start_timeout_seconds:g} s ({why})",
                )
        return Enforcement.UNDECIDED, "the server stopped before the probe ended"
    finally:
        try:
            api.delete_pod(name)
        except Exception:  # noqa: BLE001 - it ends by its own deadline anyway
            log.debug("deleting the probe pod %s", name, exc_info=True)


def ensure_policy(api: ClusterApi, settings: KubernetesSettings) -> None:
    """Create the deny-all NetworkPolicy when server.yaml says the server manages it and it is missing."""
    from contestkit.errors import ContestkitError

    if not settings.manage_network_policy:
        return
    try:
        if api.ensure_network_policy(render_network_policy(settings)):
            log.warning("created the NetworkPolicy %s in %s", NETWORK_POLICY_NAME, settings.namespace)
    except Exception as exc:  # noqa: BLE001 - one sentence for the host, whatever the client raised
        raise ContestkitError(
            f"Cannot make sure the NetworkPolicy {NETWORK_POLICY_NAME} exists in namespace "
            f"{settings.namespace} ({exc}); apply `contestkit server manifests` or set "
            "manage_network_policy: false once it is in place."
        ) from None


class NetworkPolicyGate:
    """Holds level-runs until the probe says the policy is enforced (or the host allows running without).

    The probe runs in a thread, so the server starts serving at once; until it has an answer, nothing is
    claimed. A probe that cannot decide (its pod refused or never started) is tried again every
    ``retry_seconds``; a definite answer stands until the next start.
    """

    def __init__(
        self, api: ClusterApi, settings: KubernetesSettings, status_file: Path | None = None,
        retry_seconds: float = 60.0,
    ) -> None:  # fmt: skip
        self.api, self.settings, self.status_file, self.retry_seconds = api, settings, status_file, retry_seconds
        self.state = Enforcement.CHECKING
        self.detail = ""
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="contestkit-network-probe", daemon=True)

    def start(self) -> None:
        self._write()
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        while not self.stopped.is_set():
            state, detail = probe(self.api, self.settings, self.stopped)
            if self.stopped.is_set():
                return
            self.state, self.detail = state, detail
            self._write()
            if state is Enforcement.ENFORCED:
                log.info("NetworkPolicy is enforced: %s", detail)
            elif self.settings.allow_unenforced_network_policy:
                log.warning("%s", self.warning())
            else:
                log.error("%s", self.held())
            if state is not Enforcement.UNDECIDED or self.stopped.wait(self.retry_seconds):
                return

    def held(self) -> str | None:
        """Why level-runs may not start now, in one sentence, or None."""
        if self.settings.allow_unenforced_network_policy or self.state is Enforcement.ENFORCED:
            return None
        if self.state is Enforcement.CHECKING:
            return (
                f"Level-runs wait while the server checks that namespace {self.settings.namespace} enforces "
                "NetworkPolicy (a probe pod)."
            )
        found = "does not enforce" if self.state is Enforcement.NOT_ENFORCED else "cannot be shown to enforce"
        return (
            f"Level-runs are held (jobs stay queued): the cluster {found} NetworkPolicy ({self.detail}), so "
            "agents could reach the network; use a CNI that enforces NetworkPolicy and restart the server, "
            "or set allow_unenforced_network_policy: true under kubernetes in server.yaml to run them anyway."
        )

    def warning(self) -> str | None:
        """The warning while level-runs run although the policy is not known to hold, or None."""
        if not self.settings.allow_unenforced_network_policy or self.state is Enforcement.ENFORCED:
            return None
        what = "is being checked" if self.state is Enforcement.CHECKING else f"is not enforced ({self.detail})"
        return (
            f"NetworkPolicy {what}, and level-runs run anyway because server.yaml sets "
            "allow_unenforced_network_policy: true: agents may be able to reach the network."
        )

    def _write(self) -> None:
        if self.status_file is None:
            return
        notice = self.held() or self.warning()
        document = {"state": self.state.value, "detail": self.detail, "notice": notice}
        try:
            self.status_file.write_text(json.dumps(document) + "\n", encoding="utf-8")
        except OSError:
            log.debug("writing %s", self.status_file, exc_info=True)


def read_notice(data_dir: Path) -> str | None:
    """The last server's NetworkPolicy notice (held or warned), for ``contestkit server status``; None if none."""
    try:
        document = json.loads((data_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    notice = document.get("notice") if isinstance(document, dict) else None
    return str(notice) if notice else None
