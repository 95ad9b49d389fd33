import json
import logging
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from ingest.cli import main
from ingest.gateways import (
    ACL_PATTERN,
    HASH_ITERATIONS,
    GatewayCredentialsError,
    add_gateway,
    ensure_acl_pattern,
    hash_password,
    list_gateways,
    read_password_hashes,
    remove_gateway,
    verify_password,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_ACL = REPO_ROOT / "deploy" / "mosquitto" / "acl"

#: Written by Mosquitto 2.0.11's `mosquitto_passwd -b passwd a secret`.
_SALT = "fmS3bNyGNqmigbAt"
_DIGEST = "AgLG2XesE45qtX41MFxJQV+xpK1l/2V860u8bw1bL31ZjGNResJyYPMmWjSwuIVp1ldZ0LkfA3l4X3Cb/TiRwA=="
MOSQUITTO_PASSWD_LINE = f"a:$7$101${_SALT}${_DIGEST}"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    acl = tmp_path / "acl"
    shutil.copyfile(SHIPPED_ACL, acl)
    return tmp_path / "passwd", acl


def _mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd", path=os.pathsep.join([os.environ["PATH"], "/usr/sbin"]))
    assert found, "mosquitto_passwd is missing (Debian package mosquitto)"
    return found


# --- the hash format --------------------------------------------------------------


def test_a_hash_written_by_mosquitto_passwd_verifies_with_our_code():
    encoded = MOSQUITTO_PASSWD_LINE.split(":", 1)[1]
    assert verify_password("secret", encoded)
    assert not verify_password("Secret", encoded)


def test_a_fresh_hash_from_the_installed_mosquitto_passwd_verifies(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    subprocess.run([_mosquitto_passwd(), "-b", str(passwd), "gw", "s3cret-pw"], check=True)
    assert verify_password("s3cret-pw", read_password_hashes(passwd)["gw"])


def test_our_hash_has_mosquitto_layout_salt_and_digest_sizes():
    encoded = hash_password("pw")
    empty, kind, iterations, salt, digest = encoded.split("$")
    assert (empty, kind, iterations) == ("", "7", str(HASH_ITERATIONS))
    assert len(salt) == 16  # base64 of 12 bytes, no padding
    assert len(digest) == 88  # base64 of 64 bytes
    assert verify_password("pw", encoded)
    assert not verify_password("pw ", encoded)


def test_each_hash_gets_its_own_salt():
    assert hash_password("pw") != hash_password("pw")


def test_the_iteration_count_in_the_hash_is_the_one_used():
    encoded = hash_password("pw", iterations=1000, salt=b"0" * 12)
    lying = encoded.replace("$1000$", "$101$")
    assert verify_password("pw", encoded)
    assert not verify_password("pw", lying)


@pytest.mark.parametrize("encoded", ["$6$abc$def", "$7$x$AAAA$AAAA", "plain", "$7$101$!!$AAAA"])
def test_a_hash_that_is_not_pbkdf2_sha512_is_an_error(encoded):
    with pytest.raises(GatewayCredentialsError):
        verify_password("pw", encoded)


# --- add / rotate / remove ------------------------------------------------------------


def test_add_writes_a_verifiable_entry_and_a_new_file_is_not_world_readable(files):
    passwd, acl = files
    credentials = add_gateway(passwd, acl, "gw-1")
    assert credentials.username == "gw-1"
    assert credentials.topic_prefix == "carewatch/v1/gw-1"
    assert len(credentials.password) >= 43  # 32 random bytes, URL-safe base64
    assert verify_password(credentials.password, read_password_hashes(passwd)["gw-1"])
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o640


def test_two_adds_get_different_secrets(files):
    passwd, acl = files
    assert add_gateway(passwd, acl, "gw-1").password != add_gateway(passwd, acl, "gw-2").password


def test_the_secret_is_never_in_the_password_file_or_the_repr(files):
    passwd, acl = files
    credentials = add_gateway(passwd, acl, "gw-1")
    assert credentials.password not in passwd.read_text()
    assert credentials.password not in repr(credentials)


def test_add_keeps_comments_other_users_and_the_existing_mode(files):
    passwd, acl = files
    passwd.write_text("# keep me\n\n" + MOSQUITTO_PASSWD_LINE + "\n")
    passwd.chmod(0o600)
    add_gateway(passwd, acl, "gw-1")
    lines = passwd.read_text().splitlines()
    assert lines[:3] == ["# keep me", "", MOSQUITTO_PASSWD_LINE]
    assert lines[3].startswith("gw-1:$7$101$")
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600


def test_an_existing_gateway_is_replaced_only_with_rotate(files):
    passwd, acl = files
    old = add_gateway(passwd, acl, "gw-1")
    before = passwd.read_bytes()
    with pytest.raises(GatewayCredentialsError, match="--rotate") as caught:
        add_gateway(passwd, acl, "gw-1")
    assert caught.value.gateway_id == "gw-1"
    assert passwd.read_bytes() == before
    new = add_gateway(passwd, acl, "gw-1", rotate=True)
    stored = read_password_hashes(passwd)
    assert list(stored) == ["gw-1"]
    assert verify_password(new.password, stored["gw-1"])
    assert not verify_password(old.password, stored["gw-1"])


def test_rotating_an_unknown_gateway_is_an_error(files):
    passwd, acl = files
    with pytest.raises(GatewayCredentialsError, match="no credentials"):
        add_gateway(passwd, acl, "gw-1", rotate=True)
    assert not passwd.exists()


@pytest.mark.parametrize(
    "gateway_id",
    ["alerts", "carewatch-ingest", "gw/b", "gw+", "gw#", "", "x" * 65, "gw b", "gw:1", "g\u00e9"],
)
def test_invalid_and_reserved_ids_are_refused_and_nothing_is_written(files, gateway_id):
    passwd, acl = files
    acl_before = acl.read_bytes()
    with pytest.raises(GatewayCredentialsError):
        add_gateway(passwd, acl, gateway_id)
    assert not passwd.exists()
    assert acl.read_bytes() == acl_before


def test_remove_deletes_only_that_entry(files):
    passwd, acl = files
    add_gateway(passwd, acl, "gw-1")
    add_gateway(passwd, acl, "gw-2")
    remove_gateway(passwd, "gw-1")
    assert list(read_password_hashes(passwd)) == ["gw-2"]
    with pytest.raises(GatewayCredentialsError, match="no credentials"):
        remove_gateway(passwd, "gw-1")


def test_list_shows_gateways_sorted_without_service_users(files):
    passwd, acl = files
    passwd.write_text("carewatch-ingest:$7$101$x$y\n")
    add_gateway(passwd, acl, "gw-b")
    add_gateway(passwd, acl, "gw-a")
    assert list_gateways(passwd) == ["gw-a", "gw-b"]


def test_list_of_a_missing_file_is_empty(tmp_path):
    assert list_gateways(tmp_path / "passwd") == []


def test_a_duplicated_entry_is_refused_rather_than_guessed(files):
    passwd, acl = files
    passwd.write_text("gw-1:$7$101$a$b\ngw-1:$7$101$c$d\n")
    with pytest.raises(GatewayCredentialsError, match="2 times"):
        add_gateway(passwd, acl, "gw-1", rotate=True)


def test_concurrent_adds_lose_no_gateway(files):
    passwd, acl = files
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            add_gateway(passwd, acl, f"gw-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(list_gateways(passwd)) == 16


def test_no_temporary_file_is_left_behind(files):
    passwd, acl = files
    add_gateway(passwd, acl, "gw-1")
    assert sorted(p.name for p in passwd.parent.iterdir()) == ["acl", "passwd"]


# --- the ACL ----------------------------------------------------------------------------


def test_the_shipped_acl_already_has_the_pattern_and_is_left_untouched(files):
    passwd, acl = files
    before = acl.read_bytes()
    add_gateway(passwd, acl, "gw-1")
    assert acl.read_bytes() == before


def test_an_acl_without_the_pattern_gets_it_once(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("user alerts\ntopic deny carewatch/v1/alerts/#\n")
    assert ensure_acl_pattern(acl)
    assert not ensure_acl_pattern(acl)
    lines = acl.read_text().splitlines()
    assert lines[:2] == ["user alerts", "topic deny carewatch/v1/alerts/#"]
    assert lines.count(ACL_PATTERN) == 1


def test_a_missing_acl_is_created_with_the_pattern(tmp_path):
    acl = tmp_path / "acl"
    assert ensure_acl_pattern(acl)
    assert ACL_PATTERN in acl.read_text().splitlines()
    assert stat.S_IMODE(acl.stat().st_mode) == 0o640


# --- the command line ---------------------------------------------------------------


def _cli(*args: str, files: tuple[Path, Path]) -> list[str]:
    passwd, acl = files
    return [
        "gateways",
        *args,
        "--password-file",
        str(passwd),
        *(["--acl-file", str(acl)] if args[0] == "add" else []),
    ]


def test_cli_add_prints_the_credentials_once_on_stdout_only(files, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    assert main(_cli("add", "gw-1", "--json", files=files)) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["username"] == "gw-1"
    assert record["topic_prefix"] == "carewatch/v1/gw-1"
    assert record["url"].endswith(":1884")
    assert out.count(record["password"]) == 1
    assert record["password"] not in err
    assert record["password"] not in caplog.text
    assert "systemctl reload mosquitto" in err
    assert verify_password(record["password"], read_password_hashes(files[0])["gw-1"])


def test_cli_add_text_output_names_every_field_once(files, capsys):
    assert main(_cli("add", "gw-1", "--broker-host", "mq.example", files=files)) == 0
    out = capsys.readouterr().out
    password = next(line.split()[1] for line in out.splitlines() if line.startswith("password:"))
    assert out.count(password) == 1
    assert "carewatch/v1/gw-1/{device_id}/{channel}" in out
    assert "mqtt://mq.example:1884" in out


def test_cli_refuses_a_reserved_id_with_status_1(files, capsys):
    assert main(_cli("add", "alerts", files=files)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "reserved" in err


def test_cli_add_twice_needs_rotate(files, capsys):
    assert main(_cli("add", "gw-1", files=files)) == 0
    assert main(_cli("add", "gw-1", files=files)) == 1
    assert main(_cli("add", "gw-1", "--rotate", files=files)) == 0
    capsys.readouterr()


def test_cli_list_and_remove(files, capsys):
    main(_cli("add", "gw-2", files=files))
    main(_cli("add", "gw-1", files=files))
    capsys.readouterr()
    assert main(_cli("list", files=files)) == 0
    assert capsys.readouterr().out == "gw-1\ngw-2\n"
    assert main(_cli("remove", "gw-1", files=files)) == 0
    assert main(_cli("remove", "gw-1", files=files)) == 1
    capsys.readouterr()
    assert main(_cli("list", files=files)) == 0
    assert capsys.readouterr().out == "gw-2\n"


def test_cli_reload_pid_of_no_process_is_an_error(files, capsys):
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert main([*_cli("add", "gw-1", files=files), "--reload-pid", str(dead.pid)]) == 1
    assert "cannot signal" in capsys.readouterr().err


def test_cli_env_variables_choose_the_files(files, capsys, monkeypatch):
    passwd, acl = files
    monkeypatch.setenv("CAREWATCH_MOSQUITTO_PASSWORD_FILE", str(passwd))
    monkeypatch.setenv("CAREWATCH_MOSQUITTO_ACL_FILE", str(acl))
    assert main(["gateways", "add", "gw-env"]) == 0
    capsys.readouterr()
    assert list_gateways(passwd) == ["gw-env"]
