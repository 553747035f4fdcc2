"""The scheduling-policy registry: one decorator registers a policy by name, and the name is then accepted
wherever a policy is chosen (``seer.policy``); a second class under a taken name is refused."""

from __future__ import annotations

import pytest

from seer_verl.core import SeerConfig
from seer_verl.core.policies import (POLICIES, POLICY_NAMES, FcfsPolicy, SeerPolicy, check_policy_name, make_policy,
                                     register_policy)


def test_shipped_policies_are_registered_in_order():
    assert POLICY_NAMES == ("divided", "seer", "oracle")
    assert POLICIES["seer"] is SeerPolicy
    assert [n for n, c in POLICIES.items() if c.needs_true_lengths] == ["oracle"]


def test_a_registered_policy_is_accepted_by_name_and_a_taken_name_is_refused():
    class Lifo(FcfsPolicy):
        name = "test_lifo"

    with pytest.raises(ValueError, match="seer.policy must be one of .*'divided'"):
        check_policy_name("test_lifo")
    register_policy(Lifo)
    try:
        assert check_policy_name("test_lifo") == "test_lifo"
        assert SeerConfig(policy="test_lifo").policy == "test_lifo"
        assert isinstance(make_policy("test_lifo", []), Lifo)
        register_policy(Lifo)  # the same class again is a no-op

        class Other(FcfsPolicy):
            name = "test_lifo"

        with pytest.raises(ValueError, match="'test_lifo' is registered twice"):
            register_policy(Other)
    finally:
        POLICIES.pop("test_lifo", None)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        register_policy(type("Nameless", (FcfsPolicy,), {"name": ""}))
