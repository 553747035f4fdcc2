"""verl side of replay: each sample's sampling params get its key; the config key is validated (no engine)."""

from __future__ import annotations

import pytest

pytest.importorskip("verl")


def test_key_goes_into_extra_args_without_touching_the_callers_params():
    from seer_verl.replay.agent_loop import with_replay_key
    from seer_verl.replay.keys import EXTRA_ARG, sample_key

    params = {"temperature": 1.0, "extra_args": {"other": 1}}
    traj = {"step": 3, "sample_index": 17, "rollout_n": 2, "validate": False}
    out = with_replay_key(params, 5, traj)
    assert out["extra_args"] == {"other": 1, EXTRA_ARG: sample_key(5, 3, 17, 2)}
    assert params == {"temperature": 1.0, "extra_args": {"other": 1}}  # the shared dict stays as it was
    siblings = {with_replay_key({}, 5, {**traj, "rollout_n": n})["extra_args"][EXTRA_ARG] for n in range(8)}
    assert len(siblings) == 8


def test_replay_seed_of_config_and_the_stock_manager_refuses_null():
    from omegaconf import OmegaConf

    from seer_verl.replay.agent_loop import ReplayAgentLoopManager, replay_seed_of

    assert replay_seed_of(OmegaConf.create({})) is None
    assert replay_seed_of(OmegaConf.create({"seer": {"replay_seed": 4}})) == 4
    with pytest.raises(ValueError, match=r"seer\.replay_seed=-2 is not allowed"):
        replay_seed_of(OmegaConf.create({"seer": {"replay_seed": -2}}))
    with pytest.raises(ValueError, match="needs seer.replay_seed"):
        ReplayAgentLoopManager(OmegaConf.create({"seer": {}}))


def test_seer_config_accepts_and_validates_replay_seed():
    from omegaconf import OmegaConf

    from seer_verl.integration.manager import seer_config_of

    assert "replay_seed" not in seer_config_of(OmegaConf.create({"seer": {"replay_seed": 1, "chunk_size": 64}}))
    with pytest.raises(ValueError, match=r"seer\.replay_seed=1\.5"):
        seer_config_of(OmegaConf.create({"seer": {"replay_seed": 1.5}}))
