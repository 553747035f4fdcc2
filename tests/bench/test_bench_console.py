"""The bench's screen: quiet_output sends every byte written to stdout/stderr by the process and its children to
the log file and keeps the rich console on the terminal; the progress line reads the engine monitor."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from seer_verl.bench.console import RolloutProgress
from seer_verl.integration.engines import EngineTimeline


def test_quiet_output_sends_process_and_child_output_to_the_log(tmp_path):
    log = tmp_path / "runs" / "bench.log"
    script = textwrap.dedent(f"""
        import os, subprocess, sys, logging
        from pathlib import Path
        from seer_verl.bench.console import quiet_output
        print("before")
        with quiet_output(Path({str(log)!r})) as console:
            print("python stdout chatter")
            print("python stderr chatter", file=sys.stderr)
            logging.getLogger("vllm").warning("a logger warning")
            os.write(1, b"raw fd write\\n")
            subprocess.run([sys.executable, "-c", "print('child process chatter')"])
            console.print("progress for the person")
        print("after")
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    screen = p.stdout + p.stderr
    assert screen.split() == ["before", "progress", "for", "the", "person", "after"]
    text = log.read_text()
    for line in ("python stdout chatter", "python stderr chatter", "a logger warning", "raw fd write",
                 "child process chatter"):
        assert line in text


def test_quiet_output_off_leaves_output_alone(tmp_path):
    script = ("from seer_verl.bench.console import quiet_output\n"
              "with quiet_output(None) as c:\n    print('chatter'); c.print('shown')\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.stdout.split() == ["chatter", "shown"]


class _Monitor:
    def __init__(self, timelines):
        self.timelines = timelines


def test_progress_line_counts_tokens_since_the_start_and_shows_each_engine():
    a, b = EngineTimeline("a:1"), EngineTimeline("b:2")
    for tl, tokens, running, kv in ((a, [100, 160, 400], [0, 3, 9], [0.0, 0.4, 0.82]),
                                    (b, [50, 50, 90], [0, 1, 8], [0.0, 0.1, 0.64])):
        tl.gen_tokens, tl.running, tl.kv_usage = tokens, running, kv
    calls = []

    def finished():
        calls.append(1)
        return 37

    line = RolloutProgress("seer (repeat 1/3)", 96, _Monitor([a, b]), finished).text()
    assert line.startswith("seer (repeat 1/3)  37/96 samples  340 tokens")
    assert line.endswith("engines 9 run 82% KV | 8 run 64% KV")
    failing = RolloutProgress("stock", 8, _Monitor([]), lambda: 1 / 0)
    assert "0/8 samples" in failing.text() and "engines -" in failing.text()  # a failed poll never raises
