"""The config files and the `run` and `proxy` flags: one table each, the same checks, defaults ← file ← flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ser_stream.config import KEYS, PROXY_KEYS, ConfigError, read_config_file, resolve
from ser_stream.errors import UserError
from ser_stream.settings import ProxySettings, RunSettings, as_keys, from_keys
from testkit.live import REPO, clip_path, free_endpoint
from tests.conftest import SHIPPED_MODEL, run_cli

EXAMPLE = REPO / "systemd" / "config.toml"
PROXY_EXAMPLE = REPO / "systemd" / "proxy.toml"
#: (command, its keys, its settings, its example file, keys whose example value is not the default)
TABLES = [
    (
        "run",
        KEYS,
        RunSettings,
        EXAMPLE,
        {"model", "device", "publish_connect", "device_id", "adapt", "state_dir", "min_confidence"}
        | {key for key in KEYS if key.startswith("curve_")},
    ),
    (
        "proxy",
        PROXY_KEYS,
        ProxySettings,
        PROXY_EXAMPLE,
        {"frontend", "backend", "device_id"} | {key for key in PROXY_KEYS if "_curve_" in key},
    ),
]
per_command = pytest.mark.parametrize(
    ("command", "keys", "settings", "example", "examples"), TABLES, ids=["run", "proxy"]
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@per_command
def test_every_flag_has_a_key_and_every_key_a_flag(command, keys, settings, example, examples):
    help_text = run_cli(command, "--help").stdout
    # --no-X is the off switch of the boolean key X; --reset-adaptation is an action at start, not a setting
    actions = {"help", "config", "reset-adaptation"}
    flags = {flag for flag in re.findall(r"--([a-z][a-z-]+)", help_text) if not flag.startswith("no-")} - actions
    assert flags == {key.replace("_", "-") for key in keys}


@per_command
def test_the_example_config_names_every_key_and_its_defaults_are_the_real_ones(
    tmp_path, command, keys, settings, example, examples
):
    text = example.read_text()
    for key in keys:
        assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), key
    uncommented = re.sub(r"^# ([a-z_]+ = )", r"\1", text, flags=re.MULTILINE)
    values = read_config_file(write(tmp_path, uncommented), settings)
    assert set(values) == set(keys)
    defaults = as_keys(settings())
    for key in set(keys) - examples:
        assert values[key] == defaults[key], key


@per_command
def test_the_readme_documents_every_key(command, keys, settings, example, examples):
    readme = (REPO / "README.md").read_text()
    for key in keys:
        assert f"`{key}`" in readme, key


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path):
    path = write(tmp_path, 'hangover_ms = 700\ngate_db = 20\nlog_level = "debug"\nrealtime = false\n')
    config = resolve(path, {"gate_db": 10.0})
    assert (config.vad.hangover_ms, config.vad.gate_db, config.service.log_level, config.capture.realtime) == (
        700,
        10.0,
        "debug",
        False,
    )
    assert config.vad.pre_roll_ms == RunSettings().vad.pre_roll_ms


def test_the_default_file_may_be_absent_but_a_named_one_may_not(tmp_path, monkeypatch):
    monkeypatch.setattr(RunSettings, "DEFAULT_FILE", tmp_path / "absent.toml")
    assert resolve(None, {}) == RunSettings()
    with pytest.raises(ConfigError, match="not found"):
        resolve(tmp_path / "missing.toml", {})


def test_a_relative_model_path_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "etc").mkdir()
    config = resolve(write(tmp_path / "etc", 'model = "../models/m.npz"\n'), {})
    assert config.model.path == tmp_path / "etc" / "../models/m.npz"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hangover = 300\n", "unknown key 'hangover' (did you mean 'hangover_ms'?); allowed keys: source,"),
        ("[vad]\nhangover_ms = 300\n", "unknown key 'vad'"),
        ('hangover_ms = "300"\n', 'hangover_ms = "300": must be a whole number from 1 to 10000'),
        ("hangover_ms = 0\n", "hangover_ms = 0: must be a whole number from 1 to 10000"),
        ("hangover_ms = 2.5\n", "hangover_ms = 2.5: must be a whole number from 1 to 10000"),
        ("capture_rate = 44100\n", "capture_rate = 44100: must be one of 16000, 48000"),
        ("frame_ms = true\n", "frame_ms = true: must be one of 10, 20, 30"),
        ("vad_aggressiveness = 4\n", "must be one of 0, 1, 2, 3"),
        ("gate_db = 121\n", "gate_db = 121: must be a number from 0 to 120"),
        ("gate_db = nan\n", "gate_db = NaN: must be a number from 0 to 120"),
        ("heartbeat_s = 0\n", "heartbeat_s = 0: must be a number from 0.1 to 3600"),
        (f"heartbeat_s = 1{'0' * 400}\n", "must be a number from 0.1 to 3600"),  # too big for a float
        ("wait_subscriber = -1\n", "must be a number from 0 to 3600"),
        ('realtime = "yes"\n', 'realtime = "yes": must be true or false'),
        ("print = 1\n", "print = 1: must be true or false"),
        ('log_level = "verbose"\n', "must be one of debug, info, warning, error"),
        ('source = ""\n', 'source = "": must be a string'),
        ("publish = 5556\n", "publish = 5556: must be a string"),
        ("model = 3\n", "model = 3: must be a file path (string)"),
        ("device = -1\n", "device = -1: must be a device index or name"),
        ("device = [1, 2]\n", "must be a device index or name"),
        ("hangover_ms = \n", "not valid TOML: Invalid value (at line 1, column 15)"),
        ("max_utterance_ms = 400\n", "max_utterance_ms must be a whole number of milliseconds >= min_utterance_ms"),
    ],
)
def test_a_bad_key_or_value_is_one_line_naming_it_and_what_is_allowed(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        resolve(path, {})
    assert message in str(raised.value) and str(path) in str(raised.value)
    assert "\n" not in str(raised.value) and raised.value.exit_code == 78


def test_unreadable_config_files_are_one_line(tmp_path):
    (tmp_path / "dir.toml").mkdir()
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    cases = [
        (tmp_path / "dir.toml", "is a directory"),
        (binary, "not valid TOML"),
        (binary / "x.toml", "Not a directory"),  # a path through a file
    ]
    for path, message in cases:
        with pytest.raises(ConfigError, match=message):
            read_config_file(path)


def test_config_errors_are_user_errors_with_their_own_exit_status():
    assert issubclass(ConfigError, UserError) and ConfigError.exit_code == 78


def test_restart_only_keys_keep_their_running_values_on_reload():
    running = from_keys(RunSettings, {"publish": "tcp://127.0.0.1:1", "hangover_ms": 500})
    new = from_keys(RunSettings, {"publish": "tcp://127.0.0.1:2", "hangover_ms": 800, "device": 3})
    assert sorted(running.restart_only_changes(new)) == ["device", "publish"]
    kept = running.keeping_restart_only(new)
    assert (kept.publish.endpoint, kept.capture.device, kept.vad.hangover_ms) == ("tcp://127.0.0.1:1", None, 800)


def test_run_reads_the_config_file_and_flags_win(tmp_path, ravdess):
    """The real CLI: the file's endpoint and VAD keys are used, a flag overrides one of them."""
    file_endpoint, flag_endpoint = free_endpoint(), free_endpoint()
    clip = clip_path(ravdess, 2, 1)
    path = write(
        tmp_path,
        f'source = "{clip}"\nrealtime = false\npublish = "{file_endpoint}"\nprint = true\nmin_utterance_ms = 9000\n',
    )
    from_file = run_cli("run", "--config", str(path))
    assert from_file.returncode == 0, from_file.stderr
    assert f"publishing on {file_endpoint} as " in from_file.stderr
    assert '"label"' not in from_file.stdout  # the 9 s minimum dropped the only utterance
    overridden = run_cli("run", "--config", str(path), "--publish", flag_endpoint, "--min-utterance-ms", "500")
    assert overridden.returncode == 0, overridden.stderr
    assert f"publishing on {flag_endpoint} as " in overridden.stderr and '"label"' in overridden.stdout


def test_run_with_a_bad_config_is_one_line_and_exit_78(tmp_path):
    path = write(tmp_path, "hangover = 300\n")
    result = run_cli("run", "--config", str(path))
    assert result.returncode == 78
    assert result.stderr.count("\n") == 1 and "unknown key 'hangover'" in result.stderr
    missing = run_cli("run", "--config", str(tmp_path / "nope.toml"))
    assert (
        missing.returncode == 78 and missing.stderr.strip() == f"ser-stream: config file {tmp_path}/nope.toml not found"
    )


def test_a_bad_flag_value_is_one_line_naming_the_flag(ravdess):
    result = run_cli("run", "--source", str(clip_path(ravdess, 2, 1)), "--gate-db", "loud")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--gate-db: 'loud': must be a number from 0 to 120" in result.stderr


def test_the_shipped_model_is_the_default(monkeypatch):
    monkeypatch.delenv("SER_STREAM_MODEL", raising=False)
    assert RunSettings().model.path == SHIPPED_MODEL


def test_log_level_filters_what_reaches_stderr(ravdess):
    clip = str(clip_path(ravdess, 2, 1))
    quiet = run_cli("run", "--source", clip, "--no-realtime", "--publish", free_endpoint(), "--log-level", "warning")
    assert quiet.returncode == 0 and quiet.stderr == ""
    normal = run_cli("run", "--source", clip, "--no-realtime", "--publish", free_endpoint())
    assert normal.returncode == 0 and normal.stderr.startswith("ser-stream: model ser-mlp")


def test_the_proxy_reads_its_file_and_flags_win(tmp_path):
    path = write(tmp_path, 'frontend = "tcp://*:5557"\nbackend = "tcp://*:5556"\nheartbeat_s = 2\n')
    config = resolve(path, {"backend": "tcp://127.0.0.1:6000"}, ProxySettings)
    assert (config.frontend, config.backend, config.heartbeat_s) == ("tcp://*:5557", "tcp://127.0.0.1:6000", 2.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('frontend = "tcp://*:5557"\nbackend = "tcp://*:5556"\nheartbeat = 2\n', "did you mean 'heartbeat_s'?"),
        ('frontend = "tcp://*:5557"\n', "backend is required"),
        (
            'frontend = "tcp://*:5557"\nbackend = "tcp://*:5556"\nbackend_curve_secret_key = "k.key_secret"\n',
            "backend_curve_secret_key and backend_curve_allowed_clients go together",
        ),
        ('frontend = "tcp://*:5557"\nbackend = "tcp://*:5556"\nheartbeat_s = 0\n', "heartbeat_s = 0: must be"),
    ],
)
def test_proxy_config_errors_are_one_line_and_exit_78(tmp_path, text, message):
    result = run_cli("proxy", "--config", str(write(tmp_path, text)))
    assert result.returncode == 78 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
