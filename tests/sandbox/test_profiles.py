"""Delay profiles: the realistic one draws documented ranges, seeded, on the tenant clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sandbox import Sandbox, SandboxConfig
from sandbox.faults import Faults
from sandbox.profiles import REALISTIC_DELAYS, apply_profile, delay_knobs, profile_from_env


def test_the_fast_profile_has_no_delays():
    faults = Faults(0)
    applied = apply_profile(faults, "fast", seed=0)
    assert applied.delays == {}
    assert faults.replication.application_s == faults.mailbox_permission_delay_s == 0


def test_realistic_delays_fall_in_their_documented_ranges_and_replay_with_the_seed():
    first, again, other = Faults(0), Faults(0), Faults(0)
    drawn = apply_profile(first, "realistic", seed=11).delays
    assert drawn == apply_profile(again, "realistic", seed=11).delays
    assert drawn != apply_profile(other, "realistic", seed=12).delays
    for knob, seconds in drawn.items():
        assert REALISTIC_DELAYS[knob].low_s <= seconds <= REALISTIC_DELAYS[knob].high_s, knob
    assert first.mailbox_permission_delay_s == drawn["mailbox_permission_s"]
    assert first.replication.application_s == drawn["application_s"]


def test_every_delay_the_sandbox_models_has_a_realistic_range():
    # A knob added to faults.Replication without a range here would stay 0 under "realistic".
    assert set(delay_knobs(Faults(0))) <= set(REALISTIC_DELAYS)


def test_a_profile_range_for_a_delay_not_modelled_yet_is_reported_not_applied():
    applied = apply_profile(Faults(0), "realistic", seed=0)
    assert set(applied.not_modelled) == set(REALISTIC_DELAYS) - set(delay_knobs(Faults(0)))
    assert not set(applied.not_modelled) & set(applied.delays)


def test_an_unknown_profile_is_refused_naming_the_choices(monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ValueError, match=r"'slow'.*fast.*realistic"):
        apply_profile(Faults(0), "slow", seed=0)
    monkeypatch.setenv("SANDBOX_PROFILE", "slow")
    with pytest.raises(ValueError, match="SANDBOX_PROFILE='slow'"):
        profile_from_env()
    monkeypatch.setenv("SANDBOX_PROFILE", "realistic")
    assert profile_from_env() == "realistic"
    monkeypatch.delenv("SANDBOX_PROFILE")
    assert profile_from_env() == "fast"


def test_realistic_delays_pass_on_the_tenant_clock_not_the_wall_clock(tmp_path: Path):
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    config = SandboxConfig(base_dir=tmp_path, clock=lambda: now[0], start_mail=False, profile="realistic")
    with Sandbox(config) as sb:
        delay = sb.profile.delays["service_principal_s"]
        state = sb.state
        with state.lock:
            app = state.create_application({"displayName": "replicating"}, owner=None)
            sp = state.create_service_principal(app, owner=None)
        assert state.find_service_principal(app.app_id) is None  # however long the test takes
        now[0] += timedelta(seconds=delay - 0.5)
        assert state.find_service_principal(app.app_id) is None
        now[0] += timedelta(seconds=1)
        assert state.find_service_principal(app.app_id) is sp
