"""Every CLI turns a bad setting into one clear line (key, value, what is allowed) and exit status 2, before any
engine starts, and writes nothing outside the project's own cache. No engine starts in these tests."""

from __future__ import annotations

import re

import pytest

from seer_verl.cli import main

BAD = [
    # seer-verl bench
    (["bench", "workload.num_prompts=0"], r"workload\.num_prompts=0 is not allowed: an integer >= 1"),
    (["bench", "workload.group_size=0"], r"workload\.group_size=0 is not allowed"),
    (["bench", "workload.max_tokens=0"], r"workload\.max_tokens=0 is not allowed: an integer in \[1, 32768\]"),
    (["bench", "workload.temperature=3"], r"workload\.temperature=3 is not allowed: a number in \[0, 2\]"),
    (["bench", "workload.top_p=0"], r"workload\.top_p=0 is not allowed"),
    (["bench", "workload.seed=abc"], r"workload\.seed='abc' is not allowed: an integer"),
    (["bench", "workload.replay_seed=-1"], r"workload\.replay_seed=-1 is not allowed"),
    (["bench", "engines.count=0"], r"engines\.count=0 is not allowed: an integer in \[1, 64\]"),
    (["bench", "engines.kv_cache_gb=0"], r"engines\.kv_cache_gb=0 is not allowed"),
    (["bench", "engines.max_num_seqs=0"], r"engines\.max_num_seqs=0 is not allowed"),
    (["bench", "engines.monitor_interval_s=0"], r"engines\.monitor_interval_s=0 is not allowed: seconds in \[0\.05"),
    (["bench", "timeout_s=0"], r"timeout_s=0 is not allowed: seconds > 0"),
    (["bench", "out=report.txt"], r"out='report\.txt' is not allowed: a path ending in \.json"),
    (["bench", "policies=[nope]"], r"policies='nope' is not allowed: one of"),
    (["bench", "policies=[stock,stock]"], r"each policy at most once"),
    (["bench", "repeats=0"], r"repeats=0 is not allowed: an integer in \[1, 50\]"),
    (["bench", "nosuchkey=1"], r"nosuchkey"),
    (["bench", "seer.chunk_size=0"], r"seer\.chunk_size"),
    (["bench", "seer.kv_reserve=9"], r"seer\.kv_reserve"),
    (["bench", "policies=[oracle]"], r"oracle.*list another policy"),
    # seer-verl simulate
    (["simulate", "num_engines=0"], r"num_engines=0 is not allowed: an integer >= 1"),
    (["simulate", "acceptance=nope"], r"acceptance='nope' is not allowed: one of"),
    (["simulate", "gpu_util=2"], r"gpu_util=2 is not allowed: a number in \(0, 1\]"),
    (["simulate", "chunk_size=-5"], r"chunk_size=-5 is not allowed"),
    (["simulate", "continuation=later"], r"continuation='later' is not allowed: first, fit or policy"),
    (["simulate", "kv_reserve=-1"], r"kv_reserve=-1 is not allowed"),
    (["simulate", "seed=x"], r"seed='x' is not allowed: an integer"),
    (["simulate", "nosuchkey=1"], r"unknown workload override 'nosuchkey'"),
    (["simulate", "workload=nope"], r"workload='nope': choose one of"),
    # seer-verl check-config
    (["check-config", "grpo_nope"], r"--config-name='grpo_nope' is not a config here: one of \[.*'grpo_seer'"),
    (["check-config", "--config-name=nope"], r"--config-name='nope' is not a config here"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_setting_is_one_clear_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written here either
    monkeypatch.delenv("SEER_VERL_DEBUG", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    first, *rest = err.strip().splitlines()
    assert re.search(message, first), first
    assert "Traceback" not in err and rest == ["(SEER_VERL_DEBUG=1 or --debug shows the traceback)"]
    assert list(tmp_path.iterdir()) == []


def test_debug_flag_shows_the_traceback():
    with pytest.raises(ValueError, match="num_engines=0"):
        main(["simulate", "--debug", "num_engines=0"])


def test_missing_dataset_outside_the_cache_is_an_error_and_nothing_is_written(tmp_path, capsys):
    folder = tmp_path / "my_data"
    folder.mkdir()
    (folder / "keep.txt").write_text("user data")
    assert main(["bench", f"workload.dataset={folder / 'train.parquet'}", "model=tiny"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]


def test_dataset_without_prompt_column_names_it(tmp_path):
    import pandas as pd

    from seer_verl.bench.workload import load_prompts

    p = tmp_path / "d.parquet"
    pd.DataFrame({"question": ["1+1"]}).to_parquet(p)
    with pytest.raises(ValueError, match=r"has no 'prompt' column .* columns are \['question'\]"):
        load_prompts(p, 1, 0)


@pytest.mark.parametrize("argv, message", [
    (["compare", "--configs", ","], "expected distinct comma-separated config names"),
    (["compare", "--configs", "grpo_stock,grpo_stock"], "expected distinct"),
    (["compare", "--configs", "nope"], "'nope' is not a config"),
    (["compare", "--steps", "0"], "--steps=0: must be >= 1"),
    (["compare", "--seeds", "a,b"], "expected comma-separated integers"),
    (["compare", "--replay-seed", "-1"], "--replay-seed=-1: must be an integer >= 0"),
    (["prepare", "--num-train", "0"], "--num-train=0 --num-val=64: each must be >= 1"),
])
def test_argparse_commands_reject_bad_flags(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_env_refuses_a_key_that_is_not_a_variable_name(tmp_path, monkeypatch, capsys):
    (tmp_path / "cpu.yaml").write_text(
        "ray_kwargs:\n  ray_init:\n    runtime_env:\n      env_vars:\n        'X; rm -rf /tmp/y': '1'\n")
    monkeypatch.setenv("SEER_VERL_CONFIGS", str(tmp_path))
    assert main(["env"]) == 2
    assert "is not allowed: an environment variable name" in capsys.readouterr().err


def test_env_quotes_values(tmp_path, monkeypatch, capsys):
    (tmp_path / "cpu.yaml").write_text(
        "ray_kwargs:\n  ray_init:\n    runtime_env:\n      env_vars:\n        A_B: '$(touch pwned); x'\n")
    monkeypatch.setenv("SEER_VERL_CONFIGS", str(tmp_path))
    assert main(["env"]) == 0
    assert capsys.readouterr().out.strip() == "export A_B='$(touch pwned); x'"


def test_check_config_takes_the_config_name_as_a_word_or_an_option(capsys):
    assert main(["check-config", "grpo_longtail_seer"]) == 0
    assert main(["check-config", "--config-name", "grpo_seer_v1", "seer.chunk_size=64"]) == 0
    assert capsys.readouterr().out.count("Seer config OK") == 2
    assert main(["check-config", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: seer-verl check-config")
