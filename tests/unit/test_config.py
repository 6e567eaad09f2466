"""The configuration layer (SPEC 8): example files, errors that name the key, env overrides,
secrets and their redaction."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from byteleap.config import (
    CONFIG_MODELS,
    MinerConfig,
    Secret,
    ValidatorConfig,
    WorkerConfig,
    check_secrets,
    dump_yaml,
    iter_secrets,
    load_config,
    parse_config,
    redacted_dump,
    validate_config,
)
from byteleap.config._schema import iter_keys
from byteleap.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
DOCS = ROOT / "docs" / "configuration.md"
SS58 = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
KEY_HEX = "ab" * 32
TOKEN = "tok-3f9a1c77e2"  # a made-up secret value that must never show up in any output

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fails(model: type[BaseModel], text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(model, text, source="test.yaml", env=env or {})
    return info.value


# --------------------------------------------------------------------------- example files


@pytest.mark.parametrize("name", sorted(CONFIG_MODELS))
def test_example_config_loads_and_matches_the_defaults(name: str) -> None:
    model = CONFIG_MODELS[name]
    loaded = load_config(model, CONFIGS / f"{name}.example.yaml", env={})
    assert loaded == load_config(model, None, env={})


@pytest.mark.parametrize("name", sorted(CONFIG_MODELS))
def test_example_config_holds_no_secret_values(name: str) -> None:
    path = CONFIGS / f"{name}.example.yaml"
    loaded = load_config(CONFIG_MODELS[name], path, env={})
    assert list(iter_secrets(loaded)) == []
    active = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not any(re.search(r"\bvalue\s*:", line) for line in active)
    assert not any(re.search(r"://[^/\s]*:[^@\s]*@", line) for line in active)


@pytest.mark.parametrize("name", sorted(CONFIG_MODELS))
def test_docs_describe_every_key_and_its_env_variable(name: str) -> None:
    text = DOCS.read_text()
    for key, _ in iter_keys(CONFIG_MODELS[name]):
        assert f"`{key}`" in text, key
    assert "BYTELEAP_LINK__MINER_URL" in text


def test_defaults_follow_the_data_dir(tmp_path: Path) -> None:
    env = {"BYTELEAP_PATHS__DATA_DIR": str(tmp_path)}
    worker = load_config(WorkerConfig, None, env=env)
    miner = load_config(MinerConfig, None, env=env)
    validator = load_config(ValidatorConfig, None, env=env)
    assert worker.link.key_file == tmp_path / "worker.key"
    assert miner.workers.authorized_keys_file == tmp_path / "authorized_workers"
    assert miner.database_file == tmp_path / "miner.sqlite3"
    assert validator.database.url == f"sqlite+aiosqlite:///{(tmp_path / 'validator.db').as_posix()}"
    assert not str(load_config(WorkerConfig, None, env={}).paths.data_dir).startswith("~")


def test_scoring_section_maps_onto_the_scorer_parameters() -> None:
    from byteleap.scoring import ScoringParams

    assert ValidatorConfig().scoring.to_params() == ScoringParams()
    assert ValidatorConfig().scoring.availability_buckets == 2028
    scoring = parse_config(ValidatorConfig, "scoring:\n  claim_expiry_days: 3\n", env={}).scoring
    assert scoring.to_params().claim_expiry.days == 3


def test_empty_sections_mean_defaults() -> None:
    config = parse_config(WorkerConfig, "link:\njobs:\n", env={})
    assert config == WorkerConfig()


# --------------------------------------------------------------------------- file errors


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(WorkerConfig, path, env={})
    assert info.value.source == str(path)


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory") as info:
        load_config(WorkerConfig, tmp_path, env={})
    assert info.value.source == str(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(WorkerConfig, binary, env={})
    below_a_file = binary / "worker.yaml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_config(WorkerConfig, below_a_file, env={})
    assert str(below_a_file) in str(info.value)


def test_invalid_yaml_gives_the_line(tmp_path: Path) -> None:
    path = tmp_path / "worker.yaml"
    path.write_text("link:\n  miner_url: ws://x:1/worker\n  bad: [1, 2\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+") as info:
        load_config(WorkerConfig, path, env={})
    assert str(path) in str(info.value)


def test_duplicate_keys_are_refused() -> None:
    error = fails(WorkerConfig, "logging:\n  level: INFO\n  level: DEBUG\n")
    assert "duplicate key 'level'" in str(error)
    assert "line 3" in str(error)


def test_yaml_merge_keys_may_override() -> None:
    text = "x: &base {level: INFO, format: json}\n"
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config(WorkerConfig, text, env={})
    merged = "logging:\n  <<: {level: INFO, format: json}\n  level: DEBUG\n"
    config = parse_config(WorkerConfig, merged, env={})
    assert (config.logging.level, config.logging.format) == ("DEBUG", "json")


@pytest.mark.parametrize("text", ["- link\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    error = fails(WorkerConfig, text)
    assert "top level must be a mapping" in str(error)
    assert error.source == "test.yaml"


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "worker.yaml"
    path.write_text("# nothing but a comment\n")
    assert load_config(WorkerConfig, path, env={}) == WorkerConfig()


# --------------------------------------------------------------------------- validation errors


def test_unknown_key_is_named_with_a_suggestion() -> None:
    error = fails(WorkerConfig, "link:\n  minr_url: ws://127.0.0.1:8091/worker\n")
    assert error.key == "link.minr_url"
    assert error.source == "test.yaml"
    assert "unknown key" in str(error) and "did you mean 'miner_url'" in str(error)


def test_unknown_section_is_named() -> None:
    error = fails(ValidatorConfig, "scorring: {}\n")
    assert error.key == "scorring"
    assert "did you mean 'scoring'" in str(error)


def test_wrong_type_names_key_and_expectation() -> None:
    error = fails(WorkerConfig, "link:\n  heartbeat_interval_s: soon\n")
    assert error.key == "link.heartbeat_interval_s"
    assert "expected a valid number" in str(error)
    assert "'soon'" in str(error)
    assert str(error).startswith("test.yaml: key 'link.heartbeat_interval_s'")


def test_section_given_as_scalar() -> None:
    error = fails(MinerConfig, "workers: 5\n")
    assert error.key == "workers"
    assert "expected a mapping" in str(error)


def test_list_items_are_named_by_index() -> None:
    error = fails(MinerConfig, f"api:\n  allowed_validators: [{SS58}, not-an-address]\n")
    assert error.key == "api.allowed_validators[1]"
    assert "ss58" in str(error)


def test_every_problem_is_listed() -> None:
    error = fails(WorkerConfig, "link: {heartbeat_interval_s: x}\nmetrics: {port: 70000}\n")
    assert error.key == "link.heartbeat_interval_s"
    assert "metrics.port" in str(error)


def test_nested_challenge_params_are_validated_and_merged() -> None:
    config = parse_config(ValidatorConfig, "challenge: {gpu: {stages: 8}}\n", env={})
    assert config.challenge.gpu.stages == 8
    assert config.challenge.gpu.m == 8192  # the other keys keep the GPU defaults
    error = fails(ValidatorConfig, "challenge: {gpu: {k: 70000, v: 15}}\n")
    assert error.key == "challenge.gpu.k"
    error = fails(ValidatorConfig, "challenge: {cpu: {m: 100}}\n")
    assert error.key == "challenge.cpu" and "power of two" in str(error)


@pytest.mark.parametrize(
    ("model", "text", "key", "words"),
    [
        (ValidatorConfig, "scoring: {lease_weight: 0.5}", "scoring", "must be 1"),
        (ValidatorConfig, "scoring: {bucket_minutes: 7}", "scoring", "divide"),
        (ValidatorConfig, "database: {retention_days: 2}", None, "retention_days"),
        (ValidatorConfig, "miners: {poll_interval_s: 600}", None, "poll_interval_s"),
        (ValidatorConfig, "scoring: {availability_hours: 200}", None, "cover"),
        (
            ValidatorConfig,
            "database: {availability_retention_hours: 10}",
            "database.availability_retention_hours",
            "169",
        ),
        (WorkerConfig, "jobs: {runner: subprocess}", "jobs", "allow_subprocess_runner"),
        (WorkerConfig, "link: {reconnect_min_s: 90}", "link", "reconnect_max_s"),
        (WorkerConfig, "compute: {devices: [0, 0]}", "compute", "twice"),
        (MinerConfig, "workers: {tls_cert_file: /c.pem}", "workers", "together"),
        (MinerConfig, "workers: {authorized_keys: [abc]}", "workers.authorized_keys[0]", "hex"),
        (MinerConfig, "api: {external_ip: not-an-ip}", "api.external_ip", "IPv4"),
        (MinerConfig, "wallet: {name: ../etc}", "wallet.name", "wallet"),
        (ValidatorConfig, "database: {url: mysql}", "database.url", "SQLAlchemy URL"),
    ],
)
def test_invalid_values_are_explained(
    model: type[BaseModel], text: str, key: str | None, words: str
) -> None:
    error = fails(model, text)
    assert error.key == key
    assert words in str(error)


def test_subprocess_runner_with_consent() -> None:
    text = "jobs: {runner: subprocess, allow_subprocess_runner: true}"
    assert parse_config(WorkerConfig, text, env={}).jobs.runner == "subprocess"


def test_values_are_normalised() -> None:
    text = f"logging: {{level: debug}}\nworkers: {{authorized_keys: [{KEY_HEX.upper()}]}}\n"
    config = parse_config(MinerConfig, text, env={})
    assert config.logging.level == "DEBUG"
    assert config.workers.authorized_keys == [KEY_HEX]


def test_config_is_frozen() -> None:
    config = WorkerConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.link.miner_url = "ws://elsewhere:1/worker"  # type: ignore[misc]


# --------------------------------------------------------------------------- environment


def test_env_overrides_nested_keys_with_types() -> None:
    env = {
        "BYTELEAP_LINK__MINER_URL": "wss://gw.example.org:8091/worker",
        "BYTELEAP_LINK__HEARTBEAT_INTERVAL_S": "5",
        "BYTELEAP_COMPUTE__DEVICES": "[0, 1]",
        "BYTELEAP_METRICS__ENABLED": "false",
        "BYTELEAP_LOGGING__LEVEL": "warning",
    }
    config = parse_config(WorkerConfig, "link: {heartbeat_interval_s: 20}\n", env=env)
    assert config.link.miner_url == "wss://gw.example.org:8091/worker"
    assert config.link.heartbeat_interval_s == 5.0  # the environment beats the file
    assert config.compute.devices == [0, 1]
    assert config.metrics.enabled is False
    assert config.logging.level == "WARNING"


def test_env_overrides_reach_deeper_keys() -> None:
    env = {"BYTELEAP_CHALLENGE__SAMPLING__ROWS": "8", "BYTELEAP_CHALLENGE__GPU__STAGES": "3"}
    config = load_config(ValidatorConfig, None, env=env)
    assert config.challenge.sampling.rows == 8
    assert config.challenge.sampling.stages == 4
    assert config.challenge.gpu.stages == 3
    assert config.challenge.gpu.n == 8192


def test_env_text_values_are_taken_literally() -> None:
    env = {"BYTELEAP_WALLET__HOTKEY": "007", "BYTELEAP_API__EXTERNAL_IP": ""}
    config = parse_config(MinerConfig, "api: {external_ip: 203.0.113.7}\n", env=env)
    assert config.wallet.hotkey == "007"  # not the YAML integer 7
    assert config.api.external_ip is None  # empty means null for an optional key


def test_env_lists_accept_commas() -> None:
    env = {"BYTELEAP_API__ALLOWED_VALIDATORS": f"{SS58}, {SS58}"}
    assert load_config(MinerConfig, None, env=env).api.allowed_validators == [SS58, SS58]


def test_bad_env_value_names_the_variable() -> None:
    env = {"BYTELEAP_LINK__HEARTBEAT_INTERVAL_S": "often"}
    error = fails(WorkerConfig, "", env)
    assert error.source == "env BYTELEAP_LINK__HEARTBEAT_INTERVAL_S"
    assert error.key == "link.heartbeat_interval_s"
    error = fails(WorkerConfig, "", {"BYTELEAP_COMPUTE__DEVICES": "[0, 1"})
    assert error.source == "env BYTELEAP_COMPUTE__DEVICES"


def test_error_in_a_section_the_env_touched_names_both() -> None:
    env = {"BYTELEAP_LINK__RECONNECT_MAX_S": "0.5"}
    error = fails(WorkerConfig, "link: {reconnect_min_s: 2}\n", env)
    assert error.source is not None
    assert "test.yaml" in error.source and "BYTELEAP_LINK__RECONNECT_MAX_S" in error.source


@pytest.mark.parametrize(
    ("var", "key"),
    [
        ("BYTELEAP_NOPE__X", "nope"),
        ("BYTELEAP_LINK__NOPE", "link.nope"),
        ("BYTELEAP_LINK__MINER_URL__HOST", "link.miner_url.host"),
        ("BYTELEAP_LINK____MINER_URL", None),
    ],
)
def test_unknown_env_override_names_the_variable(var: str, key: str | None) -> None:
    error = fails(WorkerConfig, "", {var: "1"})
    assert error.source == f"env {var}"
    assert error.key == key


def test_env_cannot_set_inside_a_scalar_in_the_file() -> None:
    error = fails(WorkerConfig, "link: 5\n", {"BYTELEAP_LINK__MINER_URL": "ws://a:1/worker"})
    assert error.key == "link"
    assert "BYTELEAP_LINK__MINER_URL" in str(error)


def test_unrelated_env_vars_are_ignored() -> None:
    env = {
        "BYTELEAP_TEST_DATABASE_URL": "postgresql://u:p@h/db",
        "BYTELEAP_CONFIG": "/etc/byteleap/worker.yaml",
        "PATH": "/usr/bin",
        "byteleap_link__miner_url": "not a url",
        "OTHER__THING": "x",
    }
    assert load_config(WorkerConfig, None, env=env) == WorkerConfig()


def test_bittensor_env_conventions_are_defaults() -> None:
    env = {"BT_NETWORK": "test", "BT_WALLET_NAME": "cold"}
    assert load_config(ValidatorConfig, None, env=env).chain.network == "test"
    assert load_config(MinerConfig, None, env=env).wallet.name == "cold"
    in_file = parse_config(MinerConfig, "chain: {network: local}\n", env=env)
    assert in_file.chain.network == "local"  # the file beats BT_NETWORK
    override = dict(env, BYTELEAP_CHAIN__NETWORK="finney")
    assert parse_config(MinerConfig, "chain: {network: local}\n", env=override).chain.network == (
        "finney"
    )
    assert load_config(MinerConfig, None, env={}).chain.network == "finney"


def test_load_config_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYTELEAP_METRICS__PORT", "9999")
    assert load_config(WorkerConfig, None).metrics.port == 9999


# --------------------------------------------------------------------------- secrets


def _assert_never_shown(config: BaseModel, value: str) -> None:
    shown = [repr(config), str(config), dump_yaml(config), str(redacted_dump(config))]
    shown.append(str(config.model_dump()))
    shown.append(config.model_dump_json())
    for text in shown:
        assert value not in text


def test_secret_from_env_resolves_and_is_redacted() -> None:
    env = {"BYTELEAP_JOIN_TOKEN": TOKEN}
    text = "link: {join_token: {env: BYTELEAP_JOIN_TOKEN}}\n"
    config = parse_config(WorkerConfig, text, env=env)
    assert config.link.join_token is not None
    assert config.link.join_token.resolve() == TOKEN  # the environment it was loaded with
    assert config.link.join_token.resolve({"BYTELEAP_JOIN_TOKEN": "other"}) == "other"
    _assert_never_shown(config, TOKEN)
    assert redacted_dump(config)["link"]["join_token"] == {"env": "BYTELEAP_JOIN_TOKEN"}


def test_secret_from_file_resolves(tmp_path: Path) -> None:
    secret_file = tmp_path / "join_token"
    secret_file.write_text(TOKEN + "\n")
    config = parse_config(WorkerConfig, f"link: {{join_token: {{file: {secret_file}}}}}\n", env={})
    assert config.link.join_token is not None
    assert config.link.join_token.resolve() == TOKEN  # trailing newline dropped
    _assert_never_shown(config, TOKEN)
    secret_file.unlink()
    with pytest.raises(ConfigError, match="does not exist"):
        config.link.join_token.resolve()


def test_secret_through_injected_file_reader() -> None:
    secret = Secret.from_file("/run/secrets/tokens")
    seen: list[Path] = []

    def reader(path: Path) -> str:
        seen.append(path)
        return "# spare tokens\nt1, t2\n\nt3\n"

    assert secret.resolve_lines(read_file=reader) == ["t1", "t2", "t3"]
    assert seen == [Path("/run/secrets/tokens")]


def test_env_override_of_a_secret_references_the_variable() -> None:
    env = {"BYTELEAP_LINK__JOIN_TOKEN": TOKEN}
    config = load_config(WorkerConfig, None, env=env)
    assert config.link.join_token == Secret.from_env("BYTELEAP_LINK__JOIN_TOKEN")
    assert config.link.join_token.resolve() == TOKEN
    _assert_never_shown(config, TOKEN)


def test_env_override_can_point_a_secret_at_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "tokens"
    secret_file.write_text(TOKEN)
    env = {"BYTELEAP_WORKERS__JOIN_TOKENS": f"{{file: {secret_file}}}"}
    config = load_config(MinerConfig, None, env=env)
    assert config.workers.join_tokens is not None
    assert config.workers.join_tokens.resolve_lines() == [TOKEN]


def test_malformed_secret_reference_in_env_is_not_echoed() -> None:
    var = "BYTELEAP_LINK__JOIN_TOKEN"
    error = fails(WorkerConfig, "", {var: "{" + TOKEN})
    assert error.source == f"env {var}"
    assert TOKEN not in str(error)


def test_missing_secret_fails_at_load_naming_the_key() -> None:
    text = "link: {join_token: {env: BYTELEAP_JOIN_TOKEN}}\n"
    error = fails(WorkerConfig, text)
    assert error.key == "link.join_token"
    assert "BYTELEAP_JOIN_TOKEN" in str(error)
    lazy = parse_config(WorkerConfig, text, env={}, check_secrets=False)
    with pytest.raises(ConfigError, match=r"link\.join_token"):
        check_secrets(lazy, env={})
    check_secrets(lazy, env={"BYTELEAP_JOIN_TOKEN": TOKEN})


def test_empty_secret_is_an_error() -> None:
    error = fails(WorkerConfig, "link: {join_token: {env: T}}\n", {"T": ""})
    assert "empty" in str(error)


@pytest.mark.parametrize(
    "value",
    [
        f"'{TOKEN}'",
        f"{{value: '{TOKEN}'}}",
        "{env: T, file: /x}",
        "{}",
        f"{{env: '{TOKEN} x'}}",
    ],
)
def test_bad_or_inline_secrets_are_refused_without_echo(value: str) -> None:
    error = fails(WorkerConfig, f"link: {{join_token: {value}}}\n", {"T": "v"})
    assert (error.key or "").startswith("link.join_token")
    assert TOKEN not in str(error)


def test_inline_secrets_when_explicitly_allowed() -> None:
    text = f"link: {{join_token: '{TOKEN}'}}\n"
    config = parse_config(WorkerConfig, text, env={}, allow_inline_secrets=True)
    assert config.link.join_token is not None
    assert config.link.join_token.resolve() == TOKEN
    _assert_never_shown(config, TOKEN)
    assert redacted_dump(config)["link"]["join_token"] == {"value": "***"}
    assert Secret.inline(TOKEN).resolve() == TOKEN
    assert TOKEN not in repr(Secret.inline(TOKEN))


def test_database_url_with_password_must_be_a_secret() -> None:
    url = f"postgresql+asyncpg://byteleap:{TOKEN}@db:5432/byteleap"
    error = fails(ValidatorConfig, f"database: {{url: '{url}'}}\n")
    assert error.key == "database.url"
    assert TOKEN not in str(error)
    allowed = parse_config(
        ValidatorConfig, f"database: {{url: '{url}'}}\n", env={}, allow_inline_secrets=True
    )
    assert allowed.database.resolve_url() == url
    _assert_never_shown(allowed, TOKEN)
    assert "byteleap:***@db" in dump_yaml(allowed)


def test_database_url_from_env_stays_secret() -> None:
    url = f"postgresql+asyncpg://byteleap:{TOKEN}@db/byteleap"
    config = load_config(ValidatorConfig, None, env={"BYTELEAP_DATABASE__URL": url})
    assert config.database.resolve_url() == url
    _assert_never_shown(config, TOKEN)
    plain = parse_config(ValidatorConfig, "database: {url: 'postgresql://u@db/x'}\n", env={})
    assert plain.database.resolve_url() == "postgresql://u@db/x"


def test_database_url_secret_must_hold_a_url() -> None:
    config = parse_config(ValidatorConfig, "database: {url: {env: DB}}\n", env={"DB": TOKEN})
    with pytest.raises(ConfigError, match=r"database\.url") as info:
        config.database.resolve_url()
    assert TOKEN not in str(info.value)


# --------------------------------------------------------------------------- robustness

_KEYS = sorted(
    {name for model in CONFIG_MODELS.values() for name in model.model_fields}
    | {key.rsplit(".", 1)[-1] for model in CONFIG_MODELS.values() for key, _ in iter_keys(model)}
    | {"env", "file", "value", "m", "stages"}
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_documents = st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), _values, max_size=5)


def _only_config_errors(model: type[BaseModel], call: Any) -> None:
    try:
        config = call()
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(config, model)


@FAST
@given(model=st.sampled_from(list(CONFIG_MODELS.values())), data=_documents)
def test_random_documents_raise_only_config_error(model: type[BaseModel], data: Any) -> None:
    _only_config_errors(model, lambda: validate_config(model, data, env={}))


@FAST
@given(model=st.sampled_from(list(CONFIG_MODELS.values())), text=st.text(max_size=200))
def test_random_text_raises_only_config_error(model: type[BaseModel], text: str) -> None:
    _only_config_errors(model, lambda: parse_config(model, text, env={}))


_yaml_ish = st.lists(
    st.sampled_from(
        [
            *_KEYS,
            ":",
            " ",
            "\n",
            "  ",
            "- ",
            "{",
            "}",
            "[",
            "]",
            ",",
            "&a",
            "*a",
            "<<",
            "!!int",
            "!!timestamp",
            "2020-13-45",
            "'",
            '"',
            "#",
            "~",
            "null",
            "0x1F",
        ]
    ),
    max_size=40,
).map("".join)


@FAST
@given(model=st.sampled_from(list(CONFIG_MODELS.values())), text=_yaml_ish)
def test_yaml_like_junk_raises_only_config_error(model: type[BaseModel], text: str) -> None:
    _only_config_errors(model, lambda: parse_config(model, text, env={}))


_env_names = st.lists(
    st.sampled_from([k.upper() for k in _KEYS] + ["", "X"]), min_size=1, max_size=4
)


@FAST
@given(
    model=st.sampled_from(list(CONFIG_MODELS.values())),
    env=st.dictionaries(
        _env_names.map(lambda parts: "BYTELEAP_" + "__".join(parts)),
        st.text(max_size=20) | st.sampled_from(["true", "[1, 2]", "{file: /x}", "5", ""]),
        max_size=4,
    ),
)
def test_random_env_raises_only_config_error(model: type[BaseModel], env: dict[str, str]) -> None:
    _only_config_errors(model, lambda: load_config(model, None, env=env))


def test_dump_round_trips_when_secrets_are_references(tmp_path: Path) -> None:
    env = {"BYTELEAP_JOIN_TOKEN": TOKEN}
    text = "link: {join_token: {env: BYTELEAP_JOIN_TOKEN}}\njobs: {runner: none}\n"
    config = parse_config(WorkerConfig, text, env=env)
    again = tmp_path / "effective.yaml"
    again.write_text(dump_yaml(config))
    assert load_config(WorkerConfig, again, env=env) == config
    assert yaml.safe_load(dump_yaml(config))["jobs"]["runner"] == "none"
    assert os.fspath(again).endswith("effective.yaml")
