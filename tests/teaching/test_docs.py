"""The docs cite measurements that exist: every study row the answer key quotes is in the study."""

from __future__ import annotations

import re

from tests.conftest import REPO


def quoted_rows(text: str) -> list[str]:
    """Fragments of table rows quoted in backticks, like `| medium without SAM | 46.10 |`."""
    return [match.strip() for match in re.findall(r"`(\|[^`]+)`", text)]


def missing_rows(key: str, sources: str) -> list[str]:
    """The quoted row fragments of ``key`` that ``sources`` does not contain."""
    return [row for row in quoted_rows(key) if row not in sources]


def test_the_answer_key_quotes_rows_the_study_produces():
    key = (REPO / "docs" / "answer-key.md").read_text()
    sources = "".join((REPO / "docs" / name).read_text()
                      for name in ("recipe-study.md", "laptop-regime.md", "recipe-study-like-for-like.md",
                                   "recipe-study-controls.md"))
    assert len(quoted_rows(key)) >= 6
    missing = missing_rows(key, sources)
    assert not missing, f"the answer key quotes rows that the study no longer produces: {missing}"


def test_a_number_the_study_no_longer_produces_is_caught():
    study = (REPO / "docs" / "recipe-study.md").read_text()
    row = next(line for line in study.splitlines() if line.startswith("| medium without SAM |"))
    quoted = " | ".join(row.split(" | ")[:2]) + " |"
    assert missing_rows(f"`{quoted}`", study) == []
    changed = re.sub(r"\d(?=\.\d\d)", lambda digit: str((int(digit.group()) + 1) % 10), quoted, count=1)
    assert changed != quoted and missing_rows(f"`{changed}`", study) == [changed]


def test_the_gpu_results_quote_the_gpu_checks_own_output():
    """Each figure of benchmarks.md's H200 table is in the JSON that the GPU check wrote there."""
    import json

    runs = [json.loads((REPO / "docs" / "gpu-check" / f"2026-11-30-run{n}.json").read_text())["parts"]
            for n in (1, 2)]
    doc = (REPO / "docs" / "benchmarks.md").read_text()
    hot, evaluate, profile, launcher = (runs[1][part] for part in ("hot", "evaluate", "gpu-profile", "launcher"))
    bf16, fp16 = runs[0]["throughput"]["bf16"], runs[0]["throughput"]["fp16"]
    quoted = [
        f"loss {hot['loss_first_third']:.2f} -> {hot['loss_last_third']:.2f}",
        f"{hot['images_per_second']:.1f} images/s, {hot['step_s']:.2f} s a step, peak memory "
        f"{hot['peak_memory_gib']:.1f} GiB; data wait {hot['data_wait_fraction']:.0%} averaged over all",
        f"{evaluate['single_scale']['images_per_second']:.1f} images/s single-scale, "
        f"{evaluate['tta']['images_per_second']:.1f} with test-time augmentation",
        f"the JSON's {evaluate['miou_difference_from_run']:g} is against that earlier evaluation",
        f"bf16 {bf16['tflop_per_s']:.0f} TFLOP/s ({bf16['mfu']:.1%}",
        f"fp16 {fp16['tflop_per_s']:.0f} TFLOP/s ({fp16['mfu']:.1%})",
        f"{profile['step_s']:.2f} s a step = {profile['measured_tflop_per_s']:.0f} TFLOP/s, "
        f"{profile['images_per_second']:g} images/s",
        f"`epoch_scale` {profile['epoch_scale_at_measured_speed']:g} instead",
        f"{launcher['model_keys']} keys, loaded on CUDA, mIoU {launcher['miou']} against the run's "
        f"{launcher['run_miou']}",
        f"largest history difference {runs[0]['kill-resume']['history_difference']:.4f}",
    ]
    # The check said the evaluation was not compared with the run: the doc must not call it a match.
    assert "its mIoU is not compared" in " ".join(evaluate["lines"]) and "within 0.0007" not in doc
    missing = [text for text in quoted if text not in doc]
    assert not missing, f"benchmarks.md no longer quotes these figures of the GPU check: {missing}"
