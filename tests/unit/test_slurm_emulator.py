"""The pure part of benchmarks/slurm_emulator.py: slurm.conf and jobcomp/filetxt records."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from slurm_emulator import parse_jobcomp, slurm_conf

LINE = ("JobId=119 UserId=alice(1001) GroupId=alice(1001) Name=wrap JobState=COMPLETED "
        "Partition=all TimeLimit=UNLIMITED StartTime=2026-12-04T10:35:47 "
        "EndTime=2026-12-04T10:35:48 NodeList=node2 NodeCnt=1 ProcCnt=4 WorkDir=/tmp "
        "ReservationName= Tres=cpu=1,mem=1M,node=1,billing=1 Account= QOS= WcKey= "
        "Cluster=unknown SubmitTime=2026-12-04T10:35:42 EligibleTime=2026-12-04T10:35:44 "
        "ArrayJobId=101 ArrayTaskId=18 DerivedExitCode=0:0 ExitCode=0:0 ")


def conf_lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines()
                if line and not line.startswith("#"))


def test_slurm_conf_describes_the_bed() -> None:
    lines = conf_lines(slurm_conf(1000, 32))
    expected = {"NodeName": "node[1-1000] CPUs=32 State=UNKNOWN", "FrontendName": "localhost",
                "SlurmctldHost": "localhost", "SelectType": "select/cons_tres",
                "SelectTypeParameters": "CR_Core", "SchedulerType": "sched/backfill",
                "ProctrackType": "proctrack/pgid", "JobCompType": "jobcomp/filetxt",
                "AccountingStorageType": "accounting_storage/none"}
    assert {k: lines.get(k) for k in expected} == expected
    assert lines["PartitionName"].startswith("all Nodes=ALL Default=YES")
    assert "SchedulerParameters" not in lines


def test_slurm_conf_changes_only_with_the_bed() -> None:
    assert slurm_conf(16, 4) == slurm_conf(16, 4)
    assert slurm_conf(16, 4) != slurm_conf(16, 8)
    params = conf_lines(slurm_conf(16, 4, "batch_sched_delay=0"))["SchedulerParameters"]
    assert params == "batch_sched_delay=0"


def test_parse_jobcomp() -> None:
    [rec] = parse_jobcomp(f"{LINE}\n\nnot a record\n")
    expected = {"JobId": "119", "JobState": "COMPLETED", "ArrayJobId": "101",
                "NodeList": "node2", "ReservationName": "",
                "Tres": "cpu=1,mem=1M,node=1,billing=1",
                "start": datetime(2026, 12, 4, 10, 35, 47).timestamp()}
    assert {k: rec.get(k) for k in expected} == expected
    assert rec["end"] - rec["start"] == 1
