"""The sshd test bed's node addresses: one loopback address per node, beyond 253 nodes too."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oarlib import sshnodes


def test_the_first_253_nodes_keep_their_addresses_and_the_next_ones_go_on_in_127_0_1() -> None:
    assert sshnodes.address("node1") == "127.0.0.2"
    assert sshnodes.address("node253") == "127.0.0.254"
    assert sshnodes.address("node254") == "127.0.1.1"
    assert sshnodes.address("node507") == "127.0.1.254"
    assert sshnodes.address("node508") == "127.0.2.1"
    assert sshnodes.address("node512") == "127.0.2.5"


@given(a=st.integers(1, sshnodes.MAX_NODES), b=st.integers(1, sshnodes.MAX_NODES))
def test_addresses_are_distinct_loopback_host_addresses(a: int, b: int) -> None:
    x, y = sshnodes.address(f"node{a}"), sshnodes.address(f"node{b}")
    assert (x == y) == (a == b)
    octets = [int(o) for o in x.split(".")]
    assert octets[:2] == [127, 0] and 1 <= octets[3] <= 254


def test_a_name_beyond_the_range_is_refused() -> None:
    with pytest.raises(sshnodes.SshNodesError, match="from 1 to"):
        sshnodes.address(f"node{sshnodes.MAX_NODES + 1}")
    with pytest.raises(sshnodes.SshNodesError):
        sshnodes.address("node0")


def test_users_ssh_config_covers_every_node_address() -> None:
    text = sshnodes.ssh_config_text("Host *\n  User bob\n")
    assert text.startswith(f"{sshnodes.BEGIN}\nHost node* 127.0.*.*\n")
    assert text.endswith("Host *\n  User bob\n")
