"""The pieces behind "a mistake is one line": what counts as one, how it reads, where a setting came from."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ingest.config import IngestSettings
from ioc.envcheck import check_env_file, env_file_line
from ioc.errors import UserError, blame, is_mistake, one_line, settings_error
from ioc.servers import ServerError
from rules.errors import PackError


def test_a_pack_with_several_problems_is_one_line() -> None:
    exc = PackError("p.yaml: rule A: severity: Field required\np.yaml: rule B: message: Field required")
    assert one_line(exc) == "p.yaml: rule A: severity: Field required; p.yaml: rule B: message: Field required"


def test_a_server_error_leaves_its_log_tail_out() -> None:
    exc = ServerError("mosquitto exited with 3; see var/mosquitto/mosquitto.log:\nError: Address in use\nmore")
    assert one_line(exc) == "mosquitto exited with 3; see var/mosquitto/mosquitto.log"


def test_a_bug_is_not_a_mistake() -> None:
    assert is_mistake(PackError("x"))
    assert is_mistake(UserError("x"))
    assert not is_mistake(ZeroDivisionError())
    assert not is_mistake(KeyError("x"))
    assert not is_mistake(OSError(2, "No such file or directory", "x"))  # only inside blame()


def test_blame_names_the_flag_and_the_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    with pytest.raises(UserError, match=r"^--out: cannot use .*plain/x \(Not a directory\)$"), blame("--out"):
        (tmp_path / "plain" / "x").mkdir()
    with pytest.raises(ZeroDivisionError), blame("--out"):
        _ = 1 / 0


def test_a_setting_says_where_it_was_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IOC_METRICS_PORT", raising=False)
    (tmp_path / ".env").write_text("# ports\nIOC_METRICS_PORT=abc\n")
    with pytest.raises(ValidationError) as caught:
        IngestSettings()
    line = str(settings_error(caught.value, IngestSettings, flags={"metrics_port": "--metrics-port"}))
    assert line.startswith("--metrics-port (IOC_METRICS_PORT): Input should be a valid integer")
    assert line.endswith("[set in .env line 2]")
    monkeypatch.setenv("IOC_METRICS_PORT", "-1")
    with pytest.raises(ValidationError) as caught:
        IngestSettings()
    assert str(settings_error(caught.value, IngestSettings, flags={})).endswith("[set in the environment]")


def test_an_env_file_line_that_is_not_a_setting_is_refused(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    check_env_file(env)  # none: fine
    env.write_text("IOC_SEED=1\nexport IOC_RATE=5\n# a comment\n\n")
    check_env_file(env)
    assert env_file_line("IOC_RATE", env) == 2
    assert env_file_line("IOC_DURATION", env) is None
    env.write_text("IOC_SEED=1\nIOC_RATE 5\n")
    with pytest.raises(UserError, match=r"line 2: not NAME=value: 'IOC_RATE 5'"):
        check_env_file(env)
