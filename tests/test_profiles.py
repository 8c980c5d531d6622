"""Profiles: the named ones, and the checks a custom one gets."""

from __future__ import annotations

import dataclasses

import pytest

from segkit.errors import ConfigError
from segkit.profiles import PROFILES, check_profile, get_profile


def test_named_profiles_pass_their_own_checks():
    assert list(PROFILES) == ["a100", "cpu", "scratch", "tiny"]
    for profile in PROFILES.values():
        assert check_profile(profile) is profile
    assert get_profile("cpu").weights == "scenes" and get_profile("scratch").weights is None


@pytest.mark.parametrize(("change", "message"), [
    ({"backbone": "resnet7"}, "unknown backbone 'resnet7'"),
    ({"image_size": 0}, "'image_size' must be a positive integer"),
    ({"head_channels": 1.5}, "'head_channels' must be a positive integer"),
    ({"global_batch_size": True}, "'global_batch_size' must be a positive integer"),
    ({"output_stride": 32}, "'output_stride' must be 8 or 16"),
    ({"epoch_scale": 0}, r"'epoch_scale' must be a number in \(0, 1\]"),
    ({"epoch_scale": 2}, r"'epoch_scale' must be a number in \(0, 1\]"),
    ({"sam_rho_scale": 0}, r"'sam_rho_scale' must be a number in \(0, 1\]"),
    ({"device": "tpu"}, "'device' must be 'cpu' or 'gpu'"),
])
def test_a_custom_profile_is_checked_field_by_field(change, message):
    with pytest.raises(ConfigError, match=message):
        get_profile(dataclasses.replace(get_profile("tiny"), **change))


def test_unknown_profile_names_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown profile 'laptop'; choose one of a100, cpu, scratch, tiny"):
        get_profile("laptop")
