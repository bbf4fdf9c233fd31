"""The pure parts of the web tools' setup (oarlib.web) and of ADAGE's API source."""

import pytest

from adage.deploy.sources import SourceError
from adage.resources.oarapi import resource_rows, split_url
from oarlib.conf import DbParams
from oarlib.web import drawgantt_values, set_first_line, set_monika_conf, set_php_conf

PG = DbParams("Pg", "localhost", 5432, "oar", "oar", "oarpass")


def test_php_conf_replaces_the_first_assignment_and_adds_the_others() -> None:
    text = ("<?php\n// $CONF['db_user']=\"x\";\n$CONF['db_user']=\"oar_ro\"; // account\n"
            "$CONF['db_user']=\"again\";\n?>\n")
    out = set_php_conf(text, {"db_user": "oar_ro", "site": "it's"})
    assert out.splitlines() == ["<?php", "// $CONF['db_user']=\"x\";",
                                "$CONF['db_user'] = 'oar_ro';", "$CONF['db_user']=\"again\";",
                                "$CONF['site'] = 'it\\'s';", "?>"]
    assert set_php_conf(out, {"db_user": "oar_ro", "site": "it's"}) == out


def test_monika_conf_and_suexec_lines() -> None:
    out = set_monika_conf("# dbtype = mysql\ndbtype = psql\nusername = a\n",
                          {"dbtype": "mysql", "password": "p"})
    assert out == "# dbtype = mysql\ndbtype = mysql\nusername = a\npassword = p\n"
    assert set_first_line("/var/www\npublic_html\n# c\n", "/x") == "/x\npublic_html\n# c\n"


def test_drawgantt_reads_with_the_read_only_account() -> None:
    v = drawgantt_values(PG, "oarropass")
    assert (v["db_type"], v["db_user"], v["db_passwd"], v["db_port"]) == \
           ("pg", "oar_ro", "oarropass", "5432")


def test_api_url_credentials_become_basic_auth() -> None:
    base, headers = split_url("http://alice:p%40ss@localhost:6668/oarapi-priv/")
    assert base == "http://localhost:6668/oarapi-priv"
    assert headers["Authorization"] == "Basic YWxpY2U6cEBzcw=="  # alice:p@ss
    assert "Authorization" not in split_url("http://h/oarapi")[1]
    with pytest.raises(SourceError, match="not an http"):
        split_url("localhost:6668")
    assert split_url("http://u:p@[::1]:6668/oarapi/")[0] == "http://[::1]:6668/oarapi"
    assert split_url("http://[fe80::1%25eth0]/oarapi")[0] == "http://[fe80::1%25eth0]/oarapi"
    with pytest.raises(SourceError, match="not a valid port"):
        split_url("http://h:66x/oarapi")


def test_resource_rows_drop_the_api_keys_and_sort_by_id() -> None:
    items = [{"id": 9, "network_address": "n2", "links": [], "status": "assigned"},
             {"id": 3, "network_address": "n1", "api_timestamp": 1}]
    assert resource_rows(items) == (["network_address", "resource_id"], [["n1", 3], ["n2", 9]])
