"""The bench's CPU accounting by role: which process is an engine, a front end or the rest, and the per-role
difference of two samples (real processes: this test's own and a busy child)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from seer_verl.bench.cpu_usage import ProcCpu, host_sample, host_usage, label_of, role_of, sample, settle, usage


def test_roles_from_process_names():
    assert role_of("VLLM::EngineCore", "VLLM::EngineCore") == "engine"
    assert role_of("VLLM::Worker", "") == "engine"
    assert role_of("python", "python -m vllm.v1.engine.core EngineCore_DP0") == "engine"
    assert role_of("ray::CPUvLLMHttp", "ray::CPUvLLMHttpServer.launch_server") == "server"
    assert role_of("ray::vLLMHttpServ", "ray::vLLMHttpServer.generate") == "server"
    for name, cmd in (("python", "python -m seer_verl.cli bench"), ("raylet", "raylet --x"),
                      ("ray::AgentLoopWor", "ray::AgentLoopWorker")):
        assert role_of(name, cmd) == "control", name


def test_labels_name_the_ray_class_or_the_program():
    assert label_of("ray::SeerRollou", "ray::SeerRolloutService.generate") == "SeerRolloutService"
    assert label_of("ray::IDLE", "ray::IDLE") == "IDLE"
    assert label_of("raylet", "/x/site-packages/ray/core/src/ray/raylet/raylet --a=b") == "raylet"
    assert label_of("gcs_server", "") == "gcs_server"


def test_usage_counts_a_busy_child_and_ignores_time_before_the_first_sample():
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                              "while time.process_time() - t < 0.6: pass\ntime.sleep(30)"])
    try:
        time.sleep(0.05)
        before = sample()
        assert child.pid in before and before[child.pid][0] == "control"
        t0 = time.time()
        while time.time() - t0 < 1.5 and sample()[child.pid][1] < 0.6:
            time.sleep(0.05)
        after = sample()
        u = usage(before, after, wall_s=time.time() - t0, cores=2)
        spent = after[child.pid][1] - before[child.pid][1]
        assert 0.3 < spent <= 0.7
        assert u.engine_s == 0 and u.server_s == 0 and u.control_s >= spent
        assert 0 < u.outside_engines_share <= 1
        # the busy child is named among the busiest processes outside the engines, with its own seconds
        assert before[child.pid].label == label_of("", sys.executable)
        top = dict(u.top_outside)
        assert top[before[child.pid].label] >= spent and sample()[os.getpid()].label == "driver"
        assert u.as_dict()["top_outside"][before[child.pid].label] >= round(spent, 2) - 0.01
        # a process that appears between the samples counts from zero; an engine's seconds go to its role
        late = {**after, 999_999: ProcCpu("engine", 2.0, "EngineCore")}
        assert usage(after, late, wall_s=1.0, cores=2).engine_s == 2.0
        assert "EngineCore" not in dict(usage(after, late, wall_s=1.0, cores=2).top_outside)
        # a reused pid with another role does not subtract the old process's seconds
        reused = {**after, child.pid: ProcCpu("server", 0.25, "vLLMHttpServer")}
        assert usage(after, reused, wall_s=1.0, cores=2).server_s == 0.25
    finally:
        child.kill()


def _fake(samples):
    it = iter(samples)
    return lambda: next(it)


def test_settle_waits_while_processes_burn_cpu_and_stops_at_the_first_quiet_window():
    a = {1: ProcCpu("engine", 10.0, "VLLM::Worker"), 2: ProcCpu("control", 5.0, "IDLE")}
    busy = {1: ProcCpu("engine", 10.0, "VLLM::Worker"), 2: ProcCpu("control", 5.9, "IDLE")}
    newcomer = {**busy, 3: ProcCpu("control", 0.8, "IDLE")}  # a worker started in the window: all its CPU counts
    quiet = {**newcomer, 2: ProcCpu("control", 5.95, "IDLE"), 3: ProcCpu("control", 0.85, "IDLE")}
    slept = []
    waited = settle(max_wait_s=10, window_s=1.0, idle_cores=0.25, sampler=_fake([a, busy, newcomer, quiet]),
                    sleep=slept.append)
    assert waited == 3.0 and slept == [1.0, 1.0, 1.0]


def test_settle_gives_up_after_max_wait():
    t = [0.0]

    def burning():
        t[0] += 1.0
        return {1: ProcCpu("control", t[0], "IDLE")}  # one core busy, always

    assert settle(max_wait_s=4, window_s=1.0, sampler=burning, sleep=lambda s: None) == 4.0


_STAT = "cpu  {user} {nice} {system} {idle} {iowait} 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1 2 3\n"


def _stat(**ticks: int) -> str:
    vals = {"user": 0, "nice": 0, "system": 0, "idle": 0, "iowait": 0, "steal": 0} | ticks
    return _STAT.format(**vals)


def test_host_sample_reads_the_aggregate_cpu_line_in_seconds():
    hz = os.sysconf("SC_CLK_TCK")
    s = host_sample(_stat(user=3 * hz, system=hz, idle=5 * hz, steal=2 * hz))
    assert s["user"] == 3 and s["system"] == 1 and s["idle"] == 5 and s["steal"] == 2  # not cpu0's line
    assert host_sample("intr 1 2 3\n") is None
    assert host_sample()["idle"] > 0  # this Linux host's own /proc/stat


def test_host_usage_splits_the_machine_into_steal_other_load_the_bench_and_idle():
    hz = os.sysconf("SC_CLK_TCK")
    before = host_sample(_stat(user=100 * hz, idle=100 * hz, steal=10 * hz))
    # 10 s on 2 cores = 20 core-seconds: 12 busy (9 of them the bench's), 2 stolen, 6 idle
    after = host_sample(_stat(user=110 * hz, system=2 * hz, idle=106 * hz, steal=12 * hz))
    h = host_usage(before, after, bench_cpu_s=9.0, wall_s=10.0, cores=2)
    assert h.steal == pytest.approx(0.1) and h.outside == pytest.approx(0.15) and h.bench == pytest.approx(0.45)
    assert h.idle == pytest.approx(0.3) and h.external == pytest.approx(0.25)
    assert h.as_dict()["external"] == 0.25
    assert host_usage(None, after, 9.0, 10.0, 2) is None

