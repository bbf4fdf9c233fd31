"""The lines and statuses Orpheus hands to OAR."""

from __future__ import annotations

from orpheus.oarbackend import OAREXEC_KILLED, JobEnd, oarexec_message, wait_status


def test_wait_status_is_what_oarexec_reports() -> None:
    assert wait_status(0) == 0
    assert wait_status(3) == 768
    assert wait_status(255) == 255 << 8


def test_oarexec_message() -> None:
    assert oarexec_message(JobEnd(42, 0, 768, "abc")) == "OAREXEC_42_0_768_abc"
    assert oarexec_message(JobEnd(7, OAREXEC_KILLED, None, "z")) == "OAREXEC_7_3_N_z"
