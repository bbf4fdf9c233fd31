"""oar.conf parsing and in-place rewriting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oarlib.conf import DbParams, ServerAddress, parse, set_values

SAMPLE = """\
# OAR configuration
DB_TYPE="Pg"
DB_HOSTNAME="localhost"
DB_PORT="5432"
DB_BASE_LOGIN='oar'
DB_BASE_PASSWD=secret   # trailing comment
#OPENSSH_CMD="/usr/bin/ssh -p 6667"
JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD="cpuset"
SERVER_PORT="6666"
  LOG_LEVEL = "2"
"""


def test_parse_quotes_comments_and_spaces() -> None:
    conf = parse(SAMPLE)
    assert conf["DB_TYPE"] == "Pg"
    assert conf["DB_BASE_LOGIN"] == "oar"
    assert conf["DB_BASE_PASSWD"] == "secret"
    assert conf["LOG_LEVEL"] == "2"
    assert "OPENSSH_CMD" not in conf


def test_db_and_server_from_conf() -> None:
    conf = parse(SAMPLE)
    assert DbParams.from_conf(conf) == DbParams("Pg", "localhost", 5432, "oar", "oar", "secret")
    assert ServerAddress.from_conf(conf) == ServerAddress("localhost", 6666)
    mysql = DbParams.from_conf({"DB_TYPE": "mysql"})
    assert (mysql.type, mysql.port) == ("mysql", 3306)


def test_set_values_replaces_uncomments_comments_and_appends() -> None:
    out = set_values(SAMPLE, {"OPENSSH_CMD": "/x/fake-ssh", "DB_PORT": "5433",
                              "JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD": None, "NEW": "1"})
    conf = parse(out)
    assert conf["OPENSSH_CMD"] == "/x/fake-ssh"
    assert conf["DB_PORT"] == "5433"
    assert "JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD" not in conf
    assert conf["NEW"] == "1"
    assert out.startswith("# OAR configuration\n")
    assert out.count("DB_PORT") == 1


keys = st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True)
values = st.from_regex(r"[A-Za-z0-9/._:-]{0,20}", fullmatch=True)


@given(st.dictionaries(keys, values, max_size=10), st.dictionaries(keys, values, max_size=10))
def test_set_values_then_parse_gives_the_merge(base: dict[str, str], new: dict[str, str]) -> None:
    text = "".join(f'{k}="{v}"\n' for k, v in base.items())
    assert parse(set_values(text, dict(new))) == {**base, **new}
