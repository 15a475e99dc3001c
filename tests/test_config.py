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


# ---------------------------------------------------------------------- read as oslo.config reads
ODD = (b"[DEFAULT]\n"
       b"transport_url: rabbit://openstack:mq@198.51.100.5:5672/\n"
       b"my_ip = \"198.51.100.9\"\n"
       b"host:'new-ctl'\n"
       b"[Database]\n"
       b"connection = 'mysql+pymysql://nova:p%40ss@10.0.0.4/nova?charset=utf8'\n"
       b"[filter_scheduler]\n"
       b"enabled_filters = ComputeFilter,\n"
       b"    ImagePropertiesFilter,\n"
       b"\tServerGroupAntiAffinityFilter\n"
       b"# after the value\n"
       b"weight_classes = nova.scheduler.weights.all_weighers\n")


def test_values_are_read_as_oslo_config_reads_them(tmp_path) -> None:
    """Colon form, quoted values, continuation lines and group names in any case: the same values
    oslo.config's own ConfigParser reads from the same file."""
    from oslo_config import cfg

    path = tmp_path / "nova.conf"
    path.write_bytes(ODD)
    seen: dict = {}
    cfg.ConfigParser(str(path), seen).parse()
    for section, keys in seen.items():
        for key, values in keys.items():
            assert get_value(ODD, section, key) == values[-1], (section, key)
    assert get_value(ODD, "DEFAULT", "transport_url") == "rabbit://openstack:mq@198.51.100.5:5672/"
    assert get_value(ODD, "DEFAULT", "my_ip") == "198.51.100.9"
    assert get_value(ODD, "DEFAULT", "host") == "new-ctl"
    assert get_value(ODD, "database", "connection") == "mysql+pymysql://nova:p%40ss@10.0.0.4/nova?charset=utf8"
    assert get_value(ODD, "filter_scheduler", "enabled_filters") == (
        "ComputeFilter,\nImagePropertiesFilter,\nServerGroupAntiAffinityFilter")


def test_the_writer_keeps_the_form_it_finds() -> None:
    """A colon-form or quoted value is rewritten in its own form; a value's continuation lines go with
    it; every other byte stays."""
    from services.infra.config import delete_key

    out = set_value(ODD, "database", "connection", "mysql+pymysql://nova:new@198.51.100.20:3306/nova")
    assert out == ODD.replace(b"'mysql+pymysql://nova:p%40ss@10.0.0.4/nova?charset=utf8'",
                              b"'mysql+pymysql://nova:new@198.51.100.20:3306/nova'")
    assert get_value(out, "database", "connection") == "mysql+pymysql://nova:new@198.51.100.20:3306/nova"
    out = set_value(ODD, "DEFAULT", "transport_url", "rabbit://openstack:mq@198.51.100.9:5672/")
    assert out == ODD.replace(b"@198.51.100.5:", b"@198.51.100.9:")
    out = set_value(ODD, "filter_scheduler", "enabled_filters", "ComputeFilter")
    assert out == ODD.replace(b"ComputeFilter,\n    ImagePropertiesFilter,\n\tServerGroupAntiAffinityFilter\n",
                              b"ComputeFilter\n")
    assert get_value(out, "filter_scheduler", "weight_classes") == "nova.scheduler.weights.all_weighers"
    assert delete_key(ODD, "DEFAULT", "host") == ODD.replace(b"host:'new-ctl'\n", b"")
    # a key added to a section whose name differs in case goes into that section
    out = set_value(ODD, "database", "max_retries", "-1")
    assert get_value(out, "Database", "max_retries") == "-1" and out.count(b"[") == ODD.count(b"[")


def test_a_file_oslo_config_would_refuse_is_an_error_naming_the_line() -> None:
    import pytest

    from services.infra.config import ConfigSyntaxError

    with pytest.raises(ConfigSyntaxError, match=r"at line 3, No ':' or '=' found in assignment: 'debug'"):
        get_value(b"[DEFAULT]\nx = 1\ndebug\n", "DEFAULT", "x")
    with pytest.raises(ConfigSyntaxError, match="Section must be started before assignment"):
        get_value(b"x = 1\n[DEFAULT]\n", "DEFAULT", "x")


def test_a_source_config_oslo_config_would_refuse_is_refused_before_the_run() -> None:
    """The preflight (`upgrade check`, and `upgrade run` before anything changes) names the file and line."""
    from services import preflight
    from services.releases import Jump

    files = {"/etc/nova/nova.conf": b"[DEFAULT]\n[database]\nconnection: mysql+pymysql://n:p@h/nova\nbroken line\n"}
    assert preflight.config_errors(files.get, "/etc", "nova", Jump("2025.2", "2026.1")) == [
        "/etc/nova/nova.conf on the source: not an INI file oslo.config reads: at line 4, No ':' or '=' found in "
        "assignment: 'broken line' — fix that line"]
    files["/etc/nova/nova.conf"] = files["/etc/nova/nova.conf"].replace(b"broken line", b"broken: line")
    assert preflight.config_errors(files.get, "/etc", "nova", Jump("2025.2", "2026.1")) == []
