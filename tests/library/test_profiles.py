"""Profiles: the named ones, and the checks a custom one gets."""

from __future__ import annotations

import dataclasses

import pytest

from segkit import recipes
from segkit.devices import CUDA_ELEMENT_LIMIT, check_microbatch
from segkit.errors import ConfigError
from segkit.profiles import (
    GPU_BASELINE_SECONDS,
    GPU_THROUGHPUT_ASSUMPTION,
    PROFILES,
    REFERENCE_BASELINE_IMAGES,
    REFERENCE_TRAIN_FLOPS_PER_IMAGE,
    check_profile,
    get_profile,
    gpu_epoch_scale,
)


def test_named_profiles_pass_their_own_checks():
    assert list(PROFILES) == ["a100", "gpu", "cpu", "scratch", "tiny"]
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
    ({"device": "tpu"}, "profile 'tiny': device 'tpu' is not one of cpu, gpu"),
    ({"precision": "amp_fp16"}, "profile 'tiny': precision 'amp_fp16' does not run on cpu; use one of fp32"),
    ({"microbatch_size": "auto"}, "profile 'tiny': microbatch_size 'auto' finds the size by running out of GPU"),
])
def test_a_custom_profile_is_checked_field_by_field(change, message):
    with pytest.raises(ConfigError, match=message):
        get_profile(dataclasses.replace(get_profile("tiny"), **change))


def test_unknown_profile_names_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown profile 'laptop'; choose one of a100, gpu, cpu, scratch, tiny"):
        get_profile("laptop")


def test_the_gpu_profile_is_the_reference_job_on_one_gpu():
    reference, gpu = get_profile("a100"), get_profile("gpu")
    same = ("image_size", "backbone", "output_stride", "head_channels", "weights", "global_batch_size",
            "microbatch_size", "precision", "default_data", "device", "sam_rho_scale")
    assert {f: getattr(gpu, f) for f in same} == {f: getattr(reference, f) for f in same}
    assert gpu.default_data is None and not gpu.sync_batchnorm  # real ADE20k must be given; one GPU, no sync


def test_the_gpu_profiles_epoch_scale_follows_from_its_derivation():
    """Images in an hour at the assumed speed, over the reference baseline's 128 x 20,210 images."""
    assert REFERENCE_TRAIN_FLOPS_PER_IMAGE == 3 * 507.2e9  # ResNet-101 OS8 at 512x512: forward, backward 2x
    assert GPU_THROUGHPUT_ASSUMPTION == 40e12 and GPU_BASELINE_SECONDS == 3600
    assert REFERENCE_BASELINE_IMAGES == 128 * 20_096
    images_per_hour = GPU_BASELINE_SECONDS * GPU_THROUGHPUT_ASSUMPTION / REFERENCE_TRAIN_FLOPS_PER_IMAGE
    assert images_per_hour == pytest.approx(94_637, abs=1)
    assert get_profile("gpu").epoch_scale == images_per_hour / REFERENCE_BASELINE_IMAGES == gpu_epoch_scale()
    assert gpu_epoch_scale(2 * GPU_THROUGHPUT_ASSUMPTION) == pytest.approx(2 * gpu_epoch_scale())


def test_the_gpu_profiles_baseline_takes_about_an_hour_at_the_assumed_speed():
    epochs = recipes.scale(recipes.baseline(), "gpu").epochs
    hours = epochs * 20_210 * REFERENCE_TRAIN_FLOPS_PER_IMAGE / GPU_THROUGHPUT_ASSUMPTION / 3600
    assert epochs == 5 and 0.9 < hours < 1.2


def test_one_gpu_with_the_whole_reference_batch_starts_in_microbatches_cuda_can_index():
    # Seen on an H200: automatic microbatching tried the whole 128 (then 64) and CUDA's upsampling refused
    # logits of over 2^31 elements. 128 x 150 x 512^2 is 5.0e9; 32 is the largest divisor under the limit.
    assert check_microbatch("auto", 128, 150, 512) == 32
    assert check_microbatch("auto", 16, 150, 512) == 16  # the reference's 8 GPUs: the whole device batch
    assert check_microbatch(8, 4, 16, 64) == 4  # never more than the batch
    assert 54 * 150 * 512**2 <= CUDA_ELEMENT_LIMIT < 55 * 150 * 512**2


def test_a_fixed_microbatch_over_the_limit_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^microbatch_size 64 makes logits of 64 x 150 classes x 512\^2 px, "
                                          r"over the 2\^31 elements CUDA's kernels index; use 32 or less, or 'auto'$"):
        check_microbatch(64, 128, 150, 512)
