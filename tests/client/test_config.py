"""Configuration: precedence, strictness (file, line, key in every error), private user file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from contestkit.errors import ContestkitError
from contestkit.projects.config import (
    load_config,
    read_config_file,
    save_user_config,
    user_config_dir,
    user_config_path,
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An isolated environment: its own XDG config dir, none of the caller's pip/TLS variables."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def user_file(env: dict[str, str], text: str) -> Path:
    path = write(user_config_path(env), text)
    os.chmod(path, 0o600)
    return path


def test_defaults_outside_a_project(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = load_config(tmp_path, env=env)
    assert cfg.project_file is None
    assert cfg.python_image == "python:3.11-slim"
    assert cfg.base_image == "contestkit/agent:cpu"
    assert cfg.registry is None
    assert cfg.sources["registry"] == "default"
    assert not cfg.is_set("python_image")


def test_precedence_env_over_project_over_user(tmp_path: Path, env: dict[str, str]) -> None:
    user_file(env, "registry: user.example.com/me\npython_image: user-python:1\nbase_image: user-base:1\n")
    project = tmp_path / "proj"
    write(project / "contestkit.yaml", "name: agent\nregistry: team.example.com/team\n")
    sub = project / "deep" / "er"
    sub.mkdir(parents=True)

    cfg = load_config(sub, env=env)  # found by walking up
    assert cfg.project_file == project / "contestkit.yaml"
    assert cfg.registry == "team.example.com/team"  # project beats user
    assert cfg.sources["registry"].endswith("contestkit.yaml:2")
    assert cfg.python_image == "user-python:1"  # user beats default
    assert cfg.base_image == "user-base:1"

    env["CONTESTKIT_REGISTRY"] = "env.example.com/x"
    env["CONTESTKIT_BASE_IMAGE"] = "env-base:2"
    cfg = load_config(sub, env=env)
    assert cfg.registry == "env.example.com/x"  # env beats project
    assert cfg.sources["registry"] == "$CONTESTKIT_REGISTRY"
    assert cfg.base_image == "env-base:2"


def test_build_args_merge_per_entry(tmp_path: Path, env: dict[str, str]) -> None:
    user_file(env, "build_args:\n  A: user\n  B: user\n")
    write(tmp_path / "contestkit.yaml", "build_args:\n  B: project\n  C: 3\n")
    env["CONTESTKIT_BUILD_ARGS"] = "C=env,D=x=y"
    cfg = load_config(tmp_path, env=env)
    assert cfg.build_args == {"A": "user", "B": "project", "C": "env", "D": "x=y"}
    # A comma inside a value (proxy lists) stays in it: only ",NAME=" starts a new pair.
    env["CONTESTKIT_BUILD_ARGS"] = "NO_PROXY=localhost,127.0.0.1,.corp,HTTP_PROXY=http://p:3128"
    cfg = load_config(tmp_path, env=env)
    assert cfg.build_args["NO_PROXY"] == "localhost,127.0.0.1,.corp"
    assert cfg.build_args["HTTP_PROXY"] == "http://p:3128"


def test_unknown_key_names_file_line_and_key(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "contestkit.yaml", "name: agent\n\nregsitry: x.example.com\n")
    with pytest.raises(ContestkitError) as err:
        load_config(tmp_path, env=env)
    message = str(err.value)
    assert str(path) in message
    assert "line 3" in message
    assert "'regsitry'" in message
    assert "did you mean 'registry'" in message


def test_malformed_yaml_names_line(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "contestkit.yaml", "name: agent\nregistry: [unclosed\nentry: x\n")
    with pytest.raises(ContestkitError) as err:
        load_config(tmp_path, env=env)
    assert str(path) in str(err.value)
    assert "not valid YAML" in str(err.value)
    assert "line " in str(err.value)


def test_wrong_type_names_line_and_key(tmp_path: Path, env: dict[str, str]) -> None:
    write(tmp_path / "contestkit.yaml", "name: agent\nbuild_args: [1, 2]\n")
    with pytest.raises(ContestkitError, match=r"line 2: key 'build_args' must be a mapping"):
        load_config(tmp_path, env=env)
    write(tmp_path / "contestkit.yaml", "python_image: {a: 1}\n")
    with pytest.raises(ContestkitError, match=r"line 1: key 'python_image' must be a string"):
        load_config(tmp_path, env=env)


def test_top_level_must_be_mapping(tmp_path: Path, env: dict[str, str]) -> None:
    write(tmp_path / "contestkit.yaml", "- just\n- a list\n")
    with pytest.raises(ContestkitError, match="line 1: the file must be a mapping"):
        load_config(tmp_path, env=env)


def test_duplicate_key_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    write(tmp_path / "contestkit.yaml", "name: a\nname: b\n")
    with pytest.raises(ContestkitError, match=r"line 2: key 'name' is set twice \(first on line 1\)"):
        load_config(tmp_path, env=env)


@pytest.mark.parametrize("key", ["credentials", "token", "server", "cpus", "memory"])
def test_retired_keys_are_one_sentence_saying_where_the_setting_lives(
    tmp_path: Path, env: dict[str, str], key: str
) -> None:
    """Keys no command read are gone; a file still holding one is told so (not "unknown key")."""
    path = user_file(env, f"python_image: p:1\n{key}: x\n")
    with pytest.raises(ContestkitError) as err:
        load_config(tmp_path, env=env)
    message = str(err.value)
    assert message.startswith(f"{path}, line 2: key '{key}' is no longer read (")
    assert message.endswith("remove that line.")
    write(tmp_path / "contestkit.yaml", f"{key}: x\n")  # the same in a project file
    with pytest.raises(ContestkitError, match=f"line 1: key '{key}' is no longer read"):
        read_config_file(tmp_path / "contestkit.yaml", "project")


def test_credentials_now_come_from_registry_login(tmp_path: Path, env: dict[str, str]) -> None:
    user_file(env, "credentials:\n  r.example.com: {username: u, password: p}\n")
    with pytest.raises(ContestkitError, match="contestkit registry login"):
        load_config(tmp_path, env=env)


def test_one_user_config_folder_for_the_config_and_the_stored_logins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contestkit.client import credentials

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    stored = credentials.save_registry_credentials(credentials.RegistryCredentials("h:5000/t", "u", "p"))
    assert stored.parent == user_config_dir() == user_config_path().parent == tmp_path / "xdg" / "contestkit"


def test_project_only_key_rejected_in_user_file(env: dict[str, str], tmp_path: Path) -> None:
    path = user_file(env, "dockerfile: Other.docker\n")
    with pytest.raises(ContestkitError, match="line 1: key 'dockerfile' belongs in the project"):
        read_config_file(path, "user")


def test_user_file_written_private(env: dict[str, str], tmp_path: Path) -> None:
    path = user_config_path(env)
    save_user_config({"python_image": "my/python:3.11"}, path=path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    save_user_config({"debian_mirror": "http://deb.example.org/debian"}, path=path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = load_config(tmp_path, env=env)
    assert cfg.python_image == "my/python:3.11"
    assert cfg.debian_mirror == "http://deb.example.org/debian"
    assert cfg.public()["python_image"] == "my/python:3.11"
    with pytest.raises(ContestkitError, match="unknown key 'pyhton_image'"):
        save_user_config({"pyhton_image": "x"}, path=path)


def test_ca_bundle_falls_back_to_pip_env(tmp_path: Path, env: dict[str, str]) -> None:
    bundle = write(tmp_path / "corp.pem", "-----BEGIN CERTIFICATE-----\n")
    env["SSL_CERT_FILE"] = str(bundle)
    cfg = load_config(tmp_path, env=env)
    assert cfg.ca_bundle == bundle
    assert cfg.sources["ca_bundle"] == "$SSL_CERT_FILE"
    other = write(tmp_path / "pip.pem", "x")
    env["PIP_CERT"] = str(other)  # PIP_CERT is consulted first
    assert load_config(tmp_path, env=env).ca_bundle == other
    write(tmp_path / "contestkit.yaml", "ca_bundle: certs/team.pem\n")  # relative to the project
    cfg = load_config(tmp_path, env=env)
    assert cfg.ca_bundle == tmp_path / "certs" / "team.pem"
    assert cfg.is_set("ca_bundle")


def test_wheels_dir_from_pip_find_links(tmp_path: Path, env: dict[str, str]) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    env["PIP_FIND_LINKS"] = f"https://example.invalid/simple file://{wheels}"
    assert load_config(tmp_path, env=env).wheels_dir == wheels


def test_bad_env_map_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    env["CONTESTKIT_BUILD_ARGS"] = "novalue"
    with pytest.raises(ContestkitError, match=r"\$CONTESTKIT_BUILD_ARGS: expected NAME=value"):
        load_config(tmp_path, env=env)


def test_unknown_contestkit_env_vars_are_ignored(tmp_path: Path, env: dict[str, str]) -> None:
    env["CONTESTKIT_SOMETHING_ELSE"] = "1"
    load_config(tmp_path, env=env)


def test_null_values_fall_through(tmp_path: Path, env: dict[str, str]) -> None:
    user_file(env, "registry: user.example.com/me\n")
    write(tmp_path / "contestkit.yaml", "name: a\nregistry: null\n")  # as `contestkit new` writes it
    assert load_config(tmp_path, env=env).registry == "user.example.com/me"


def test_a_file_that_is_not_utf8_is_one_sentence(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "contestkit.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ContestkitError) as err:
        load_config(tmp_path, env=env)
    path = tmp_path / "contestkit.yaml"
    assert str(err.value) == f"{path}: not UTF-8 text (byte 9 cannot be decoded); save it as UTF-8."


# -- the strict reader (contestkit.yamlconfig), shared with server.yaml ---------------------------


def test_a_key_set_twice_inside_a_mapping_is_refused_with_both_lines(tmp_path: Path, env: dict[str, str]) -> None:
    """Pasting a block into a file that already sets the key must not let the last one win silently."""
    path = write(
        tmp_path / "contestkit.yaml", "name: a\nbuild_args:\n  HTTP_PROXY: http://a:1\n  HTTP_PROXY: http://b:2\n"
    )
    with pytest.raises(ContestkitError) as err:
        load_config(tmp_path, env=env)
    assert str(err.value) == (
        f"{path}, line 4: key 'build_args.HTTP_PROXY' is set twice (first on line 3); keep one of the two lines."
    )


def test_a_type_error_shows_an_example_of_that_key(tmp_path: Path, env: dict[str, str]) -> None:
    write(tmp_path / "contestkit.yaml", "name: agent\nbuild_args: [1, 2]\n")
    with pytest.raises(ContestkitError, match=r"e\.g\. `build_args: \{HTTP_PROXY: http://proxy:3128\}`"):
        load_config(tmp_path, env=env)
    write(tmp_path / "contestkit.yaml", "registry: [a, b]\n")
    with pytest.raises(ContestkitError, match=r"e\.g\. `registry: registry\.example\.com/team`"):
        load_config(tmp_path, env=env)


def test_every_key_has_an_example_its_own_type_accepts(tmp_path: Path) -> None:
    """An example a user copies from an error message must itself be accepted."""
    import yaml

    from contestkit.projects.config import KEYS
    from contestkit.yamlconfig import convert

    for key in KEYS.values():
        convert(key.setting, yaml.safe_load(f"{key.name}: {key.example}")[key.name], "example", base_dir=tmp_path)
