"""The bridge against a real env: both client APIs, budgets, reset refusal and bad peers."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import gym_remote.client as grc
import gym_remote.exceptions as gre
from contestkit.bridge import protocol
from contestkit.bridge.client import RemoteEnv
from contestkit.bridge.server import BridgeServer, Budgets
from contestkit.env.envs import ContestEnv
from contestkit.env.games import resolve_level
from contestkit.env.monitor import EpisodeLog
from tests.support.clock import ManualClock
from tests.support.paths import GAME, STATE


class Served:
    """A real ContestEnv served on a thread, the agent side in the test."""

    def __init__(self, tmp: Path, timesteps=1_000_000, wallclock=3600.0, connect_timeout=10.0, clock=time.monotonic):
        self.env = ContestEnv(resolve_level(GAME, STATE), seed=0)
        self.log = EpisodeLog(tmp / "results")
        hello = protocol.Hello(GAME, STATE, self.env.buttons, [224, 320, 3], timestep_limit=timesteps,
                               wallclock_limit=wallclock)  # fmt: skip
        self.bridge = tmp / "tmp" / "sock"
        self.server = BridgeServer(self.bridge, self.env, hello, self.log, Budgets(timesteps, wallclock),
                                   connect_timeout=connect_timeout, after_budget_grace=1.0, clock=clock)  # fmt: skip
        self.outcome = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.outcome = self.server.serve()

    def join(self, timeout=30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the env side hung"
        self.env.close()
        self.log.close()
        return self.outcome


def test_gymnasium_client_steps_and_obs_match(tmp_path):
    s = Served(tmp_path)
    env = RemoteEnv(s.bridge, connect_timeout=10)
    assert env.game == GAME and env.state == STATE and len(env.buttons) == 12
    obs, info = env.reset()
    assert obs.shape == (224, 320, 3) and obs.dtype == np.uint8 and info == {}
    first = obs
    obs2, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert isinstance(reward, float) and not truncated
    # Observations handed out are copies: the next step must not change one already returned.
    keep = obs2.copy()
    for _ in range(20):
        env.step(env.action_space.sample())
    assert np.array_equal(obs2, keep)
    assert first is not obs2
    env.close()
    assert s.join().end_reason == "agent-closed"


def test_2018_client_runs_contest_agent_loop_until_budget(tmp_path):
    s = Served(tmp_path, timesteps=600)
    env = grc.RemoteEnv(str(s.bridge))
    episodes = 0
    with pytest.raises(gre.GymRemoteError) as err:
        env.reset()
        while True:
            action = env.action_space.sample()
            action[7] = 1  # the sample is mutable, as contest agents assume
            ob, reward, done, _ = env.step(action)
            assert ob.shape == (224, 320, 3)
            if done:
                episodes += 1
                env.reset()
    assert isinstance(err.value, gre.TimestepTimeoutError)
    outcome = s.join()
    assert outcome.end_reason == "timestep-budget" and outcome.timesteps == 600
    assert len(s.log.episode_rewards) == episodes


def test_step_without_reset_starts_an_episode(tmp_path):
    # The agent in the contest's documentation never calls reset().
    s = Served(tmp_path, timesteps=50)
    env = grc.RemoteEnv(str(s.bridge))
    with pytest.raises(gre.TimestepTimeoutError):
        while True:
            env.step(env.action_space.sample())
    assert s.join().timesteps == 50


def test_reset_mid_episode_is_refused(tmp_path):
    s = Served(tmp_path)
    env = RemoteEnv(s.bridge)
    env.reset()
    env.reset()  # nothing played yet: allowed
    env.step(np.zeros(12, np.uint8))
    with pytest.raises(gre.ResetError):
        env.reset()
    # The session goes on after the refusal.
    env.step(np.zeros(12, np.uint8))
    env.close()
    s.join()


def test_wallclock_budget(tmp_path):
    clock = ManualClock()
    s = Served(tmp_path, wallclock=1.5, clock=clock)
    env = RemoteEnv(s.bridge)
    env.reset()
    env.step(np.zeros(12, np.uint8))
    clock.advance(1.6)
    with pytest.raises(gre.WallClockTimeoutError):
        env.step(np.zeros(12, np.uint8))
    assert s.join().end_reason == "wallclock-budget"


def test_budget_errors_are_distinct_gym_remote_errors():
    classes = {gre.TimestepTimeoutError, gre.WallClockTimeoutError, gre.EnvGoneError, gre.ResetError}
    assert len(classes) == 4 and all(issubclass(c, gre.GymRemoteError) for c in classes)


def test_env_gone_raises(tmp_path):
    s = Served(tmp_path, timesteps=5)
    env = RemoteEnv(s.bridge)
    env.reset()
    with pytest.raises(gre.TimestepTimeoutError):
        for _ in range(10):
            env.step(np.zeros(12, np.uint8))
    s.join()
    with pytest.raises(gre.EnvGoneError):
        env.step(np.zeros(12, np.uint8))


def test_garbage_greeting_ends_session(tmp_path):
    s = Served(tmp_path)
    deadline = time.time() + 10
    while not (s.bridge / "ctl").exists() and time.time() < deadline:
        time.sleep(0.02)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(s.bridge / "ctl"))
    sock.sendall(b"GET / HTTP/1.1\r\n")
    reply = sock.recv(64)
    assert reply[0] == protocol.ERR_BAD_REQUEST
    outcome = s.join()
    assert outcome.end_reason == "bad-request" and "greeting" in outcome.error


def test_garbage_request_ends_session(tmp_path):
    s = Served(tmp_path)
    env = RemoteEnv(s.bridge)
    env.reset()
    env._req[0] = 99
    env._sock.sendall(env._req)
    outcome = s.join()
    assert outcome.end_reason == "bad-request" and "malformed" in outcome.error


def test_disconnect_mid_message(tmp_path):
    s = Served(tmp_path)
    env = RemoteEnv(s.bridge)
    env.reset()
    env._sock.sendall(bytes([protocol.OP_STEP, 0]))  # half a request, then gone
    env._sock.close()
    outcome = s.join()
    assert outcome.end_reason == "agent-disconnected-mid-step"


def test_agent_that_never_connects(tmp_path):
    s = Served(tmp_path, connect_timeout=0.5)
    outcome = s.join()
    assert outcome.end_reason == "no-connection" and "never connected" in outcome.error


def test_client_without_env_times_out(tmp_path):
    with pytest.raises(gre.EnvGoneError, match="no remote env answered"):
        RemoteEnv(tmp_path / "nothing", connect_timeout=0.3)


def test_an_agent_thinking_past_the_wallclock_deadline_is_caught(tmp_path):
    # The budget is measured on the injected clock; the receive slices and the grace run in real time.
    clock = ManualClock()
    s = Served(tmp_path, wallclock=4.0, clock=clock)
    env = RemoteEnv(s.bridge)
    env.reset()
    for _ in range(3):
        env.step(np.zeros(12, np.uint8))
    clock.advance(3.0)
    env.step(np.zeros(12, np.uint8))  # still inside the budget
    clock.advance(1.5)  # the agent now "thinks" past the deadline, forever
    outcome = s.join(timeout=30)
    assert outcome.end_reason == "wallclock-budget"


@pytest.mark.perf
def test_an_agent_thinking_past_the_wallclock_deadline_is_caught_within_a_slice(tmp_path):
    # SO_RCVTIMEO bounds each receive, not the deadline: armed when 4 s were left, a receive that
    # starts 3 s later must still end at the deadline (+ one slice), not 4 s after it started.
    s = Served(tmp_path, wallclock=4.0)
    env = RemoteEnv(s.bridge)
    env.reset()
    t0 = time.monotonic()
    for _ in range(3):
        env.step(np.zeros(12, np.uint8))
    time.sleep(3.0)  # the agent thinks for 3 s of real time: that is the scenario timed here
    env.step(np.zeros(12, np.uint8))  # still inside the budget
    outcome = s.join(timeout=30)  # the agent now "thinks" forever
    ended = time.monotonic() - t0
    assert outcome.end_reason == "wallclock-budget"
    assert ended < 4.0 + 1.0 + 1.0 + 0.5, ended  # budget, one slice, the 1 s grace, slack (was 8 s)


def test_the_grace_after_a_budget_is_one_deadline_not_per_call(tmp_path):
    clock = ManualClock()
    s = Served(tmp_path, timesteps=5, clock=clock)
    env = RemoteEnv(s.bridge)
    env.reset()
    for _ in range(5):
        env.step(np.zeros(12, np.uint8))
    for _ in range(3):  # an agent that swallows its budget exception and keeps calling gets it again
        with pytest.raises(gre.TimestepTimeoutError):
            env.step(np.zeros(12, np.uint8))
    clock.advance(1.0)  # the 1 s grace, once, however often it called: its next call is the last answered
    for _ in range(3):  # that answer, then the closed connection (a per-call grace answers all three)
        try:
            env.step(np.zeros(12, np.uint8))
        except gre.EnvGoneError:
            break
        except gre.TimestepTimeoutError:
            continue
    else:
        pytest.fail("the session went on answering calls after its grace ran out")
    assert s.join().end_reason == "timestep-budget"


@pytest.mark.perf
def test_the_grace_after_a_budget_ends_in_real_time(tmp_path):
    s = Served(tmp_path, timesteps=5)
    env = RemoteEnv(s.bridge)
    env.reset()
    for _ in range(5):
        env.step(np.zeros(12, np.uint8))
    t0 = time.monotonic()
    errors = 0
    while s.thread.is_alive() and time.monotonic() - t0 < 10:
        try:  # an agent that swallows its budget exception and keeps calling
            env.step(np.zeros(12, np.uint8))
        except gre.GymRemoteError:
            errors += 1
    assert errors > 1 and s.join().end_reason == "timestep-budget"
    assert time.monotonic() - t0 < 3.0  # the 1 s grace, not one per call


def test_wallclock_spent_before_the_agent_connects(tmp_path):
    s = Served(tmp_path, wallclock=0.01, connect_timeout=30)
    outcome = s.join(timeout=10)
    assert outcome.end_reason == "wallclock-budget" and "before the agent connected" in outcome.error


def test_actions_other_than_0_or_1_are_refused_not_misread(tmp_path):
    s = Served(tmp_path)
    env = RemoteEnv(s.bridge)
    env.reset()
    with pytest.raises(ValueError, match="12 button values"):  # caught in the agent's own process
        env.step(np.full(12, -1))
    env._action[:] = 2  # a client that does not check: the env refuses it as the agent's fault
    env._req[0] = protocol.OP_STEP
    env._sock.sendall(env._req)
    outcome = s.join()
    assert outcome.end_reason == "bad-request" and "invalid action" in outcome.error


def test_a_stop_inside_the_emulator_step_is_a_stop_not_an_emulator_error(tmp_path):
    from contestkit.bridge.server import Stopped

    s = Served(tmp_path)
    real_step = s.env.step
    calls = []

    def step(action):  # the SIGTERM handler raising Stopped while the emulator runs
        calls.append(1)
        if len(calls) == 3:
            raise Stopped
        return real_step(action)

    s.env.step = step
    env = RemoteEnv(s.bridge)
    env.reset()
    env.step(np.zeros(12, np.uint8))
    env.step(np.zeros(12, np.uint8))
    with pytest.raises(gre.GymRemoteError):
        env.step(np.zeros(12, np.uint8))
    assert s.join().end_reason == "stopped"


def test_close_releases_the_shared_observation_mapping(tmp_path):
    s = Served(tmp_path)
    env = RemoteEnv(s.bridge)
    env.reset()
    env.step(np.zeros(12, np.uint8))
    env.close()
    assert env._map.closed  # one mapping per RemoteEnv would otherwise leak
    with pytest.raises(gre.EnvGoneError):
        env.render()
    s.join()


def test_an_emulator_failure_on_reset_is_reported_not_a_crash(tmp_path):
    s = Served(tmp_path)

    def broken_reset(**_kwargs):  # what a failing emulator does; a real one cannot fail on demand
        raise RuntimeError("core dumped")

    s.env.reset = broken_reset
    env = RemoteEnv(s.bridge)
    with pytest.raises(gre.EnvError, match="core dumped"):
        env.reset()
    outcome = s.join()
    assert outcome.end_reason == "env-error" and "core dumped" in outcome.error


def test_an_env_that_vanishes_mid_reply_is_env_gone(tmp_path):
    """A hand-written env side (no emulator needed): it promises a payload, then disconnects."""
    bridge = tmp_path / "sock"
    bridge.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(bridge / protocol.CTL_NAME))
    listener.listen(1)
    hello = protocol.Hello(GAME, STATE, ["B"] * 12, [224, 320, 3])
    (bridge / protocol.OBS_NAME).write_bytes(bytes(224 * 320 * 3))

    def fake_env():
        conn, _ = listener.accept()
        conn.recv(4)
        payload = hello.encode()
        conn.sendall(protocol.REPLY.pack(protocol.OK, 0, 0, len(payload), 0.0) + payload)
        conn.recv(16)
        conn.sendall(protocol.REPLY.pack(protocol.OK, 0, 0, 100, 0.0) + b"{")  # 1 of 100 bytes
        conn.close()

    thread = threading.Thread(target=fake_env, daemon=True)
    thread.start()
    env = RemoteEnv(bridge, connect_timeout=5)
    with pytest.raises(gre.EnvGoneError):
        env.step(np.zeros(12, np.uint8))
    thread.join(5)
    listener.close()


def test_a_newer_env_hello_is_understood_by_an_older_client():
    payload = protocol.Hello(GAME, STATE, ["B"] * 12, [224, 320, 3]).encode()
    newer = json.dumps({**json.loads(payload), "frame_skip": 4}).encode()
    assert protocol.Hello.decode(newer).game == GAME


def test_end_reasons_keep_their_strings_and_say_whose_doing_they_were():
    """The status files' strings are the enum's values; each reason carries its classification."""
    from contestkit.bridge.protocol import EndReason

    assert {reason.value: reason.fault.value for reason in EndReason} == {
        "agent-closed": "none",
        "stopped": "none",
        "interrupted": "none",
        "timestep-budget": "budget",
        "wallclock-budget": "budget",
        "bad-request": "agent",
        "agent-disconnected-mid-step": "agent",
        "no-connection": "agent",
        "env-error": "env",
        "setup-error": "env",
    }
    assert json.dumps({"end_reason": EndReason.TIMESTEP_BUDGET}) == '{"end_reason": "timestep-budget"}'
    assert f"{EndReason.NO_CONNECTION}" == "no-connection" and EndReason.read("no-such-end") is None
