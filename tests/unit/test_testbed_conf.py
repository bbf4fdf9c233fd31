"""oar.conf values of the test bed, Orpheus' conf edits and their exact undo (pure parts)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oarlib import conf as oarconf
from oarlib import testbed
from oarlib.testbed import Config, conf_values, is_oar_server_process
from orpheus.install import CONF_KEYS, original_lines, revert_conf


def test_pg_and_mysql_values() -> None:
    pg, my = conf_values(Config()), conf_values(Config(db="mysql", port=7000))
    assert (pg["DB_TYPE"], pg["DB_PORT"], pg["SERVER_PORT"]) == ("Pg", "5432", "6666")
    assert (my["DB_TYPE"], my["DB_PORT"], my["SERVER_PORT"]) == ("mysql", "3306", "7000")
    assert oarconf.DbParams.from_conf(oarconf.parse(oarconf.set_values("", my))).port == 3306


def test_energy_values() -> None:
    off = conf_values(Config())
    on = conf_values(Config(energy=True, energy_idle=30, boot_time=7))
    assert off["ENERGY_SAVING_INTERNAL"] == "no" and "SCHEDULER_NODE_MANAGER_IDLE_TIME" not in off
    assert on["ENERGY_SAVING_INTERNAL"] == "yes"
    assert on["ENERGY_SAVING_NODE_MANAGER_WAKE_UP_CMD"] == "/usr/local/lib/orpheus/fake-wakeup 7"
    assert on["SCHEDULER_NODE_MANAGER_IDLE_TIME"] == on["SCHEDULER_NODE_MANAGER_SLEEP_TIME"] == "30"


@pytest.mark.parametrize("bad", [dict(db="sqlite"), dict(nodes=0), dict(user="oar"),
                                 dict(user="root"), dict(log_level=4), dict(cores=-1)])
def test_bad_config_is_refused_with_the_flag_name(bad: dict[str, object]) -> None:
    with pytest.raises(testbed.TestbedError, match=r"--|OAR refuses"):
        Config(**bad).check()  # type: ignore[arg-type]


@pytest.mark.parametrize(("argv", "expected"), [
    (["/usr/bin/perl", "/usr/lib/oar/Almighty"], True),
    (["Almighty: appendice"], True),
    (["Almighty: bipbip"], True),
    (["/usr/bin/perl", "/usr/lib/oar/sarko"], True),
    (["/usr/bin/perl", "/usr/lib/oar/oar_meta_sched"], False),
    (["python", "-m", "pytest", "-k", "Almighty"], False),
    ([], False),
])
def test_oar_server_processes_are_recognised(argv: list[str], expected: bool) -> None:
    assert is_oar_server_process(argv) is expected


key = st.sampled_from([*CONF_KEYS, "LOG_LEVEL", "DB_TYPE", "SERVER_PORT"])
value = st.text("abc /-=0123", max_size=8)
line = st.one_of(
    st.builds(lambda k, v, c: f'{"#" if c else ""}{k}="{v}"', key, value, st.booleans()),
    st.text("# abcxyz\t", max_size=12),
)


def _one_per_key(lines: list[str]) -> list[str]:
    """set_values keeps one line per key (it drops later duplicates): draw such files."""
    seen: set[str] = set()
    out = []
    for ln in lines:
        k = next((k for k in CONF_KEYS if ln.lstrip("#").startswith(k + "=")), None)
        if k in seen:
            continue
        if k:
            seen.add(k)
        out.append(ln)
    return out


@given(st.lists(line, min_size=1, max_size=12).map(_one_per_key),
       st.lists(st.tuples(key, value), max_size=3))
def test_revert_undoes_install_even_after_other_edits(lines: list[str],
                                                      later: list[tuple[str, str]]) -> None:
    text = "".join(f"{ln}\n" for ln in lines)
    originals = original_lines(text, list(CONF_KEYS))
    installed = oarconf.set_values(text, CONF_KEYS)
    assert oarconf.parse(installed)["OPENSSH_CMD"] == CONF_KEYS["OPENSSH_CMD"]
    assert revert_conf(installed, originals) == text
    # other settings changed after install (e.g. the test bed switched DB) survive the undo
    other = {k: v for k, v in later if k not in CONF_KEYS}
    assert revert_conf(oarconf.set_values(installed, other), originals) == \
        oarconf.set_values(text, other)
