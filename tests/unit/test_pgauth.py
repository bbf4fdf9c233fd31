"""pg_hba.conf's block for OAR's roles: at the head, replaced whole, the rest kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oarlib import pgauth

DEBIAN = """# PostgreSQL Client Authentication Configuration File
local   all             postgres                                peer
local   all             all                                     peer
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
"""


def test_the_block_comes_first_and_names_only_oar_s_roles_and_database() -> None:
    text = pgauth.hba_text(DEBIAN, "oar", ["oar", "oar_ro"])
    lines = text.splitlines()
    assert lines[0] == pgauth.BEGIN and lines[3] == pgauth.END
    assert [line.split() for line in lines[1:3]] == [
        ["host", "oar", "oar,oar_ro", "127.0.0.1/32", "md5"],
        ["host", "oar", "oar,oar_ro", "::1/128", "md5"]]
    assert "\n".join(lines[4:]) + "\n" == DEBIAN  # Debian's rules, after, unchanged


def test_a_second_pass_changes_nothing_and_new_roles_replace_the_block() -> None:
    once = pgauth.hba_text(DEBIAN, "oar", ["oar", "oar_ro"])
    assert pgauth.hba_text(once, "oar", ["oar", "oar_ro"]) == once
    other = pgauth.hba_text(once, "oar2", ["u"])
    assert other.count(pgauth.BEGIN) == 1 and "oar_ro" not in other
    assert other.endswith(DEBIAN)


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                                blacklist_characters="\r\n\x0b\x0c\x1c\x1d"
                                                "\x1e\x85\u2028\u2029"), max_size=30),
                max_size=8))
def test_any_file_keeps_its_lines_after_the_block(lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    out = pgauth.hba_text(text, "oar", ["oar"])
    assert out.splitlines()[4:] == lines
    assert pgauth.hba_text(out, "oar", ["oar"]) == out


def test_md5_passwords_are_stored_as_postgresql_stores_them() -> None:
    # what PostgreSQL 15 stored in pg_authid.rolpassword for ALTER ROLE ... PASSWORD
    assert pgauth.md5_password("oar", "oarpass") == "md5ad4154b8e459723b65cbdfcb566bade0"
    assert pgauth.md5_password("oar_ro", "oarropass") == "md51c143fb6851adc487f4f981bad0790d7"
