"""`seer-verl prepare` (seer_verl.prepare.cli)."""

from __future__ import annotations

import pytest

from seer_verl.prepare import cli


def test_parser_defaults():
    args = cli.build_parser().parse_args([])
    assert (args.cache_dir, args.data_dir, args.num_train, args.num_val, args.seed, args.tiny, args.force) == (
        None, None, 512, 64, 0, False, False,
    )


def test_prepare_all_and_main(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    from seer_verl.prepare.model import is_complete

    calls = []

    def fake_smollm2(out_dir=None, force=False):  # the real build is covered in test_prepare_model.py
        calls.append(("smollm2", out_dir, force))
        return out_dir

    monkeypatch.setattr("seer_verl.prepare.model.build_smollm2", fake_smollm2)
    paths = cli.prepare_all(cache_dir=tmp_path, num_train=8, num_val=4, seed=2, tiny=True)
    assert paths["model"] == tmp_path / "models" / "SmolLM2-135M-Instruct"
    assert paths["tiny_model"] == tmp_path / "models" / "tiny-llama-random"
    assert is_complete(paths["tiny_model"], "tiny")
    assert paths["train"] == tmp_path / "data" / "arith" / "train.parquet" and paths["train"].is_file()
    assert paths["val"] == tmp_path / "data" / "arith" / "val.parquet" and paths["val"].is_file()

    rc = cli.main(["--cache-dir", str(tmp_path), "--num-train", "8", "--num-val", "4", "--seed", "2",
                   "--data-dir", str(tmp_path / "d")])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"model={tmp_path / 'models' / 'SmolLM2-135M-Instruct'}" in out
    assert f"train={tmp_path / 'd' / 'train.parquet'}" in out
    assert f"val={tmp_path / 'd' / 'val.parquet'}" in out
    assert "tiny_model=" not in out
    assert len(calls) == 2
