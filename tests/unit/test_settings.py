"""Unit tests for capgate.settings: sources, precedence and error messages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from capgate.errors import ConfigError
from capgate.settings import load_settings, parse_host_port

YAML = """\
server:
  listen: "0.0.0.0:7000"
  metrics_listen: "127.0.0.1:7001"
policy:
  bundle: bundles/from-yaml
budget:
  redis_url: "rediss://yaml:6380/1"
  deadline_ms: 30
decision_log:
  path: /tmp/from-yaml.jsonl
identity:
  mode: jwt
  jwt: {jwks: /etc/capgate/jwks.json, issuer: "https://idp.example", audience: capgate}
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no CAPGATE_* variable but the ones they set."""
    for name in list(os.environ):
        if name.upper().startswith("CAPGATE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "capgate.yaml"
    path.write_text(YAML)
    return path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def config_error(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kwargs)
    return str(info.value)


def test_defaults() -> None:
    settings = load_settings(policy={"bundle": "b"})
    assert settings.server.listen == "127.0.0.1:50051"
    assert settings.server.metrics_listen == "127.0.0.1:9464"
    assert settings.server.grace_period_seconds == 10.0
    assert settings.server.max_receive_message_bytes == 4 << 20
    assert settings.server.min_time_left_ms == 50
    assert settings.policy.bundle == Path("b")
    assert settings.policy.entrypoint == "data.capgate.authz.decision"
    assert settings.budget.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.budget.deadline_ms == 20
    assert settings.budget.run_ttl_seconds == 86_400
    assert settings.decision_log.path is None


def test_yaml_file(config: Path) -> None:
    settings = load_settings(config)
    assert settings.server.listen == "0.0.0.0:7000"
    assert settings.server.metrics_listen == "127.0.0.1:7001"
    assert settings.policy.bundle == Path("bundles/from-yaml")
    assert settings.budget.redis_url == "rediss://yaml:6380/1"
    assert settings.budget.deadline_ms == 30
    assert settings.decision_log.path == Path("/tmp/from-yaml.jsonl")
    # Keys the file leaves out keep their defaults.
    assert settings.budget.run_ttl_seconds == 86_400


@pytest.mark.parametrize(
    ("use_yaml", "env", "flag", "expected"),
    [
        (False, None, None, 20),
        (True, None, None, 30),
        (True, "40", None, 40),
        (False, "40", None, 40),
        (True, "40", 50, 50),
        (True, None, 50, 50),
        (False, None, 50, 50),
    ],
)
def test_precedence_flags_env_yaml_defaults(
    monkeypatch: pytest.MonkeyPatch,
    config: Path,
    use_yaml: bool,
    env: str | None,
    flag: int | None,
    expected: int,
) -> None:
    overrides: dict[str, Any] = {"policy": {"bundle": "b"}} if not use_yaml else {}
    if env is not None:
        monkeypatch.setenv("CAPGATE_BUDGET__DEADLINE_MS", env)
    if flag is not None:
        overrides["budget"] = {"deadline_ms": flag}
    settings = load_settings(config if use_yaml else None, **overrides)
    assert settings.budget.deadline_ms == expected


def test_sources_merge_per_key(monkeypatch: pytest.MonkeyPatch, config: Path) -> None:
    """A flag or variable for one nested key does not reset its siblings from YAML."""
    monkeypatch.setenv("CAPGATE_BUDGET__DEADLINE_MS", "40")
    monkeypatch.setenv("CAPGATE_SERVER__LISTEN", "127.0.0.1:8000")
    settings = load_settings(config, budget={"run_ttl_seconds": 120})
    assert settings.budget.deadline_ms == 40  # env
    assert settings.budget.run_ttl_seconds == 120  # flag
    assert settings.budget.redis_url == "rediss://yaml:6380/1"  # YAML
    assert settings.server.listen == "127.0.0.1:8000"  # env
    assert settings.server.metrics_listen == "127.0.0.1:7001"  # YAML
    assert settings.policy.bundle == Path("bundles/from-yaml")  # YAML


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("CAPGATE_BUDGET__DEADLINE_MS", "55", ("budget", "deadline_ms"), 55),
        ("capgate_budget__deadline_ms", "56", ("budget", "deadline_ms"), 56),
        ("CAPGATE_BUDGET__REDIS_URL", "unix:///run/r.sock", ("budget", "redis_url"), None),
        ("CAPGATE_SERVER__LISTEN", "[::1]:0", ("server", "listen"), None),
        ("CAPGATE_POLICY__BUNDLE", "/srv/b.tar.gz", ("policy", "bundle"), Path("/srv/b.tar.gz")),
        ("CAPGATE_DECISION_LOG__PATH", "/x.jsonl", ("decision_log", "path"), Path("/x.jsonl")),
    ],
)
def test_nested_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    attribute: tuple[str, str],
    expected: Any,
) -> None:
    monkeypatch.setenv(name, value)
    settings = load_settings(policy={"bundle": "b"}) if "POLICY" not in name else load_settings()
    section, key = attribute
    assert getattr(getattr(settings, section), key) == (value if expected is None else expected)


def test_policy_from_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPGATE_POLICY__BUNDLE", "bundles/env")
    assert load_settings().policy.bundle == Path("bundles/env")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({}, "policy.bundle"),
        ({"budget": {"deadline_ms": 0}}, "budget.deadline_ms"),
        ({"budget": {"deadline_ms": 10_001}}, "budget.deadline_ms"),
        ({"budget": {"deadline_ms": "soon"}}, "budget.deadline_ms"),
        ({"budget": {"run_ttl_seconds": 59}}, "budget.run_ttl_seconds"),
        ({"budget": {"redis_url": "http://x:6379"}}, "budget.redis_url"),
        ({"budget": {"bogus": 1}}, "budget.bogus"),
        ({"server": {"listen": "nohost"}}, "server.listen"),
        ({"server": {"listen": "h:99999"}}, "server.listen"),
        ({"server": {"listen": ":80"}}, "server.listen"),
        ({"server": {"listen": "h:"}}, "server.listen"),
        ({"server": {"listen": "h:-1"}}, "server.listen"),
        ({"server": {"listen": "h:http"}}, "server.listen"),
        ({"server": {"metrics_listen": "9464"}}, "server.metrics_listen"),
        ({"server": {"grace_period_seconds": -1}}, "server.grace_period_seconds"),
        ({"server": {"max_receive_message_bytes": 1000}}, "server.max_receive_message_bytes"),
        ({"server": {"min_time_left_ms": -1}}, "server.min_time_left_ms"),
        ({"policy": {"bundle": "b", "extra": 1}}, "policy.extra"),
        ({"identity": {"mode": "oauth"}}, "identity.mode"),
    ],
)
def test_config_error_names_the_key(overrides: dict[str, Any], key: str) -> None:
    if key != "policy.bundle":
        overrides.setdefault("policy", {"bundle": "b"})
    message = config_error(**overrides)
    assert f"\n  {key} (or CAPGATE_" in message


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("CAPGATE_BUDGET__DEADLINE_MS", "0", "budget.deadline_ms"),
        ("CAPGATE_BUDGET__DEADLINE_MS", "fast", "budget.deadline_ms"),
        ("CAPGATE_SERVER__LISTEN", "h:99999", "server.listen"),
    ],
)
def test_config_error_from_environment_names_key_and_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, key: str
) -> None:
    monkeypatch.setenv(name, value)
    message = config_error(policy={"bundle": "b"})
    assert f"{key} (or {name})" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("policy: {bundle: b}\nbudget: {bogus: 1}\n", "budget.bogus"),
        ("policy: {bundle: b}\nbudget: {deadline_ms: 0}\n", "budget.deadline_ms"),
        ("policy: {bundle: b}\nserver: {listen: nohost}\n", "server.listen"),
        ("policy: {bundle: b}\nunknown_section: {}\n", "unknown_section"),
        ("server: {listen: '127.0.0.1:1'}\n", "policy.bundle"),
    ],
)
def test_config_error_from_yaml_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    message = config_error(write(tmp_path, text))
    assert f"\n  {key} (or CAPGATE_" in message


def test_several_bad_keys_are_all_named() -> None:
    message = config_error(
        policy={"bundle": "b"},
        budget={"deadline_ms": 0, "bogus": True},
        server={"listen": ":80"},
    )
    for key in ("budget.deadline_ms", "budget.bogus", "server.listen"):
        assert f"{key} (or " in message


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    assert config_error(missing) == f"--config {missing}: no such file"


def test_config_directory_is_not_a_file(tmp_path: Path) -> None:
    assert "no such file" in config_error(tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        "- a\n- b\n",
        "policy: {bundle: [unclosed\n",
        "policy:\n\tbundle: x\n",
    ],
)
def test_malformed_yaml_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert str(path) in config_error(path)


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), policy={"bundle": "b"})
    assert settings.budget.deadline_ms == 20


def test_settings_are_frozen() -> None:
    settings = load_settings(policy={"bundle": "b"})
    with pytest.raises(ValueError):
        settings.budget.deadline_ms = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:50051", ("127.0.0.1", 50051)),
        ("localhost:0", ("localhost", 0)),
        ("h:65535", ("h", 65535)),
        ("[::1]:0", ("::1", 0)),
        ("[::]:443", ("::", 443)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_parse_host_port(value: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "nohost",
        "h:99999",
        "h:65536",
        ":80",
        "h:",
        "",
        ":",
        "h:-1",
        "h:+1",
        "h:8 0",
        "h:0x50",
        "[]:80",
        "h:\u0668\u0660",
    ],
)
def test_parse_host_port_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_host_port(value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"server": {"listen": "0.0.0.0:50051"}}, "server.listen must be a loopback address"),
        ({"server": {"listen": "10.0.0.1:50051"}}, "use identity.mode jwt or mtls"),
        ({"identity": {"mode": "jwt"}}, "identity.jwt.jwks, identity.jwt.issuer"),
        (
            {"identity": {"mode": "jwt", "jwt": {"jwks": "j", "issuer": "i"}}},
            "identity.jwt.audience",
        ),
        ({"identity": {"mode": "mtls"}}, "server.tls.client_ca_file, identity.spiffe.trust_domain"),
    ],
)
def test_identity_rules_across_keys_name_them(overrides: dict[str, Any], expected: str) -> None:
    """insecure only on loopback; jwt and mtls need their keys (checked before start)."""
    overrides.setdefault("policy", {"bundle": "b"})
    assert expected in config_error(**overrides)


def test_insecure_identity_is_allowed_on_loopback_and_unix_sockets() -> None:
    for listen in ("127.0.0.1:0", "[::1]:50051", "localhost:1", "unix:/run/capgate.sock"):
        settings = load_settings(None, policy={"bundle": "b"}, server={"listen": listen})
        assert settings.identity.mode == "insecure"
