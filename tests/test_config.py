"""INI edits keep every other byte; DB URLs are re-pointed without losing their options."""

from __future__ import annotations

from services.infra.config import db_url_credentials, get_value, rewrite_db_url, set_value

CONF = (b"# keystone.conf -- managed by hand\n"
        b"[DEFAULT]\n"
        b"#debug = true\n"
        b"log_file = /var/log/keystone/keystone.log\n"
        b"\n"
        b"[database]\n"
        b"# the DB\n"
        b"connection=mysql+pymysql://keystone:old%40pw@10.0.0.4:3306/keystone?charset=utf8\n"
        b"max_retries = -1\n"
        b"\n"
        b"[token]\n"
        b"provider = fernet\n")


def test_set_value_changes_one_line_only():
    out = set_value(CONF, "database", "connection", "mysql+pymysql://keystone:new@10.0.0.9:3307/keystone")
    before, after = CONF.splitlines(keepends=True), out.splitlines(keepends=True)
    assert len(before) == len(after)
    diff = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert diff == [7]
    assert after[7] == b"connection=mysql+pymysql://keystone:new@10.0.0.9:3307/keystone\n"


def test_set_value_adds_missing_key_and_section():
    out = set_value(CONF, "token", "expiration", "3600")
    assert out == CONF + b"expiration = 3600\n"
    out = set_value(CONF, "cache", "enabled", "false")
    assert out.startswith(CONF) and out.endswith(b"[cache]\nenabled = false\n")
    out = set_value(CONF, "DEFAULT", "debug", "false")
    assert b"log_file = /var/log/keystone/keystone.log\ndebug = false\n\n[database]" in out


def test_get_value_last_wins_and_ignores_other_sections():
    data = b"[a]\nx = 1\n[b]\nx = 2\n[a]\nx = 3\n"
    assert get_value(data, "a", "x") == "3"
    assert get_value(data, "b", "x") == "2"
    assert get_value(data, "c", "x") is None


def test_rewrite_db_url_keeps_query_and_quotes_password():
    url = get_value(CONF, "database", "connection")
    new = rewrite_db_url(url, "198.51.100.20", 13307)
    assert new == "mysql+pymysql://keystone:old%40pw@198.51.100.20:13307/keystone?charset=utf8"
    assert db_url_credentials(new) == ("keystone", "old@pw", "keystone")
    new = rewrite_db_url(url, "127.0.0.1", 3306, "ks2", "p:w/@")
    assert db_url_credentials(new) == ("ks2", "p:w/@", "keystone")
