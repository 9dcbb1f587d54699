"""The runtime's resource readers on fixture cgroup v2 and v1 trees and a fixture /proc."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airlaunch.protocol import RUNTIME_CLOCK, Resources
from airlaunch.runtime import resources
from airlaunch.runtime.resources import PhaseClock, measure, network_bytes, process_started_at, read_resources

MIB = 1024 * 1024
NET_DEV = "\n".join(  # /proc/net/dev: two header lines, then rx bytes first and tx bytes ninth
    [
        "Inter-|   Receive                                                |  Transmit",
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls",
        "    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0",
        "  eth0:  125000     100    0    0    0     0          0         0    64000      80    0    0    0     0",
        "  eth1:    1000      10    0    0    0     0          0         0      500       5    0    0    0     0",
        "",
    ]
)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A container's /proc: its own network namespace, in the root of its cgroup namespace."""
    return write(tmp_path / "proc", {"self/cgroup": "0::/\n", "net/dev": NET_DEV})


V2_FILES = {
    "cgroup.controllers": "cpuset cpu io memory pids\n",
    "cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\n",
    "cpu.max": "50000 100000\n",
    "memory.peak": f"{300 * MIB}\n",
    "memory.max": f"{512 * MIB}\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
    "253:0 rbytes=100 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
}


def test_cgroup_v2_inside_a_container(tmp_path: Path, proc: Path) -> None:
    root = write(tmp_path / "cgroup", V2_FILES)
    found = read_resources(root, proc)
    assert found == Resources(
        cgroup="v2",
        cpu_seconds=2.5,
        memory_peak_bytes=300 * MIB,
        memory_limit_bytes=512 * MIB,
        memory_limit_hit=False,
        oom_kills=0,
        disk_read_bytes=4196,
        disk_write_bytes=8192,
        net_rx_bytes=126000,
        net_tx_bytes=64500,
        cpu_limit=0.5,
        architecture=resources.architecture(),
    )


def test_cgroup_v2_reports_the_memory_limit_hit_and_oom_kills(tmp_path: Path, proc: Path) -> None:
    events = "low 0\nhigh 0\nmax 17\noom 1\noom_kill 1\noom_group_kill 0\n"
    root = write(
        tmp_path / "cgroup", {**V2_FILES, "memory.events": events, "memory.max": "max\n", "cpu.max": "max 100000"}
    )
    found = read_resources(root, proc)
    assert (found.memory_limit_hit, found.oom_kills) == (True, 1)
    assert found.memory_limit_bytes is None and found.cpu_limit is None  # "max": no limit


def test_cgroup_v2_seen_from_the_host_namespace_uses_our_own_group(tmp_path: Path, proc: Path) -> None:
    """With cgroupns=host /sys/fs/cgroup is the whole tree: our group is the path /proc/self/cgroup names."""
    root = write(tmp_path / "cgroup", {**V2_FILES, "cpu.stat": "usage_usec 999000000\n"})
    write(root / "system.slice" / "docker-abc.scope", {**V2_FILES, "cpu.stat": "usage_usec 1250000\n"})
    (proc / "self" / "cgroup").write_text("0::/system.slice/docker-abc.scope\n")
    assert read_resources(root, proc).cpu_seconds == 1.25


def test_cgroup_v2_without_memory_peak_falls_back_to_the_largest_process(tmp_path: Path, proc: Path) -> None:
    """Linux before 5.19 (and so some Fargate platform versions) has no memory.peak."""
    files = {k: v for k, v in V2_FILES.items() if k != "memory.peak"}
    found = read_resources(write(tmp_path / "cgroup", files), proc)
    assert found.memory_peak_bytes is not None and found.memory_peak_bytes > 10 * MIB  # this Python at least


V1_FILES = {
    "cpuacct/cpuacct.usage": "3750000000\n",
    "cpu/cpu.cfs_quota_us": "150000\n",
    "cpu/cpu.cfs_period_us": "100000\n",
    "memory/memory.max_usage_in_bytes": f"{200 * MIB}\n",
    "memory/memory.limit_in_bytes": "9223372036854771712\n",  # no limit
    "memory/memory.failcnt": "0\n",
    "memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    "blkio/blkio.throttle.io_service_bytes": "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n"
    "8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n",
}


def test_cgroup_v1_with_one_mount_per_controller(tmp_path: Path, proc: Path) -> None:
    """This machine's Docker: cpu, cpuacct, memory and blkio each mounted alone, our group at their root."""
    (proc / "self" / "cgroup").write_text(
        "7:blkio:/docker/abc\n4:memory:/docker/abc\n2:cpuacct:/docker/abc\n1:cpu:/docker/abc\n0::/\n"
    )
    found = read_resources(write(tmp_path / "cgroup", V1_FILES), proc)
    assert found == Resources(
        cgroup="v1",
        cpu_seconds=3.75,
        memory_peak_bytes=200 * MIB,
        memory_limit_bytes=None,
        memory_limit_hit=False,
        oom_kills=0,
        disk_read_bytes=4096,
        disk_write_bytes=8192,
        net_rx_bytes=126000,
        net_tx_bytes=64500,
        cpu_limit=1.5,
        architecture=resources.architecture(),
    )


def test_cgroup_v1_combined_mounts_and_a_memory_limit_hit(tmp_path: Path, proc: Path) -> None:
    files = {
        name.replace("cpuacct/", "cpu,cpuacct/").replace("cpu/", "cpu,cpuacct/"): text
        for name, text in V1_FILES.items()
    }
    files.update(
        {
            "memory/memory.limit_in_bytes": f"{256 * MIB}\n",
            "memory/memory.failcnt": "42\n",
            "memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        }
    )
    found = read_resources(write(tmp_path / "cgroup", files), proc)
    assert (found.cgroup, found.cpu_seconds, found.cpu_limit) == ("v1", 3.75, 1.5)
    assert (found.memory_limit_bytes, found.memory_limit_hit, found.oom_kills) == (256 * MIB, True, 1)


def test_cgroup_v1_limit_reached_without_a_kill_still_counts_as_hit(tmp_path: Path, proc: Path) -> None:
    files = {**V1_FILES, "memory/memory.failcnt": "3\n"}
    found = read_resources(write(tmp_path / "cgroup", files), proc)
    assert (found.memory_limit_hit, found.oom_kills) == (True, 0)


def test_no_cgroup_files_leave_resources_unknown(tmp_path: Path, proc: Path) -> None:
    found = read_resources(tmp_path / "empty", proc)
    assert found.cgroup == "" and found.cpu_seconds is None and found.memory_limit_hit is None
    assert found.net_rx_bytes == 126000


def test_host_network_counters_are_not_the_tasks(proc: Path) -> None:
    (proc / "net" / "dev").write_text(
        NET_DEV + "docker0:       0       0    0    0    0     0          0         0        0\n"
    )
    assert network_bytes(proc) == (None, None)
    assert network_bytes(proc / "missing") == (None, None)


def test_process_start_from_ticks_since_boot(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    stat = f"1 (python (the runtime)) S 0 1 1 0 -1 4194560 {' '.join(['0'] * 12)} {1000 * ticks + ticks // 2} 0 0\n"
    proc = write(tmp_path / "proc", {"self/stat": stat, "uptime": "1010.00 3000.00\n"})
    now = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC).timestamp()
    # booted at now - 1010 s; started 1000.5 s after boot: 9.5 s before now
    assert process_started_at(proc, now) == "2026-01-01T12:00:00.500+00:00"


def test_measure_orders_the_phases_and_survives_a_broken_tree(tmp_path: Path, proc: Path) -> None:
    clock = PhaseClock()
    for phase in (resources.PARAMS_READ, resources.USER_CODE_STARTED, resources.USER_CODE_ENDED):
        clock.mark(phase)
    root = write(tmp_path / "cgroup", {**V2_FILES, "io.stat": "8:0 rbytes=not-a-number\n"})
    usage = measure(clock, root=root, proc=proc)
    phases = usage.phases
    moments = [
        phases.params_read_at,
        phases.user_code_started_at,
        phases.user_code_ended_at,
        phases.results_uploaded_at,
    ]
    assert all(moments) and moments == sorted(moments)  # type: ignore[type-var]
    assert phases.clock == RUNTIME_CLOCK and phases.runtime_started_at is None  # the fixture /proc has no stat
    assert usage.resources.cgroup == "" and usage.resources.architecture == resources.architecture()


def test_measure_on_this_machine_finds_our_own_process_start() -> None:
    usage = measure(PhaseClock())
    started = datetime.fromisoformat(usage.phases.runtime_started_at or "")
    assert 0 <= (datetime.now(UTC) - started).total_seconds() < 3600  # this test process started it
