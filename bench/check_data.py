"""Checking the validation files before a run (``train(check_data=True)``): its cost against one evaluation's reading.

``segkit.data.check_files`` reads every validation pair once through the evaluation transform, so that a
bad file fails at the start instead of at the first evaluation. The baseline is what that evaluation
reads anyway: one pass of the evaluation loader over the same split (``build_loaders``, ``num_workers=0``,
the profile's batch), without the model. A ratio near 1 means the check costs one more such pass.

Two sets: the cpu profile's built-in validation set (96 images, resized to 64), and generated pairs at
ADE20k's size (683 x 512 JPEGs and PNG labels, as ``bench/data_pipeline.py`` writes them) resized to 512
as the gpu and a100 profiles evaluate, checked with 1 and 2 threads; torch itself runs one thread. Times
are medians of 3 repetitions after one warm-up (the files are in the page cache, as after a first reading).

    .venv/bin/python bench/check_data.py              # 96 ADE-sized pairs (about a minute)
    .venv/bin/python bench/check_data.py --images 8   # smoke run
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from data_pipeline import ADE_HEIGHT, ADE_WIDTH, JPEG_QUALITY
from measure import host_line, median_seconds
from PIL import Image

from segkit.data import check_files, open_dataset
from segkit.profiles import get_profile
from segkit.scenes import render_scene
from segkit.spec import run_spec
from segkit.transforms import eval_transform

#: The validation split of ADE20k (ADEChallengeData2016).
ADE20K_VAL_IMAGES = 2000


def write_validation(root: Path, images: int) -> Path:
    """``images`` generated pairs at ADE20k's size in the validation layout (a one-pair training split beside)."""
    for split, count in (("training", 1), ("validation", images)):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for index in range(1, count + 1):
            image, label = render_scene(np.random.default_rng(index), ADE_HEIGHT, ADE_WIDTH)
            Image.fromarray(image).save(root / "images" / split / f"{index:08d}.jpg", quality=JPEG_QUALITY)
            Image.fromarray(label).save(root / "annotations" / split / f"{index:08d}.png")
    return root


def one_evaluation_pass(dataset, batch: int) -> None:
    """What an evaluation reads: every batch of the evaluation loader, without the model."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch)
    for _ in loader:
        pass


def compare(label: str, dataset, batch: int, threads: tuple[int, ...]) -> dict[int, float]:
    """Print the check's seconds (per thread count) and the evaluation pass's; return the check's."""
    baseline = median_seconds(lambda: one_evaluation_pass(dataset, batch), warmup=1, repeats=3)
    checks = {count: median_seconds(lambda count=count: check_files(dataset, workers=count), warmup=1, repeats=3)
              for count in threads}
    print(f"{label}: {len(dataset)} images; one evaluation pass (batch {batch}) {baseline:.2f} s")
    for count, seconds in checks.items():
        print(f"  check_files with {count} thread(s): {seconds:.2f} s ({1000 * seconds / len(dataset):.1f} ms per "
              f"image), {seconds / baseline:.2f}x the evaluation pass")
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96, help="generated ADE-sized validation pairs")
    args = parser.parse_args()
    # One torch thread, as in a loader worker and as the check's threads run: on a busy 2-core host, two
    # threads made every item of the evaluation pass about 10x slower (thread start-up on tiny tensors).
    torch.set_num_threads(1)
    print(host_line())
    cpu = get_profile("cpu")
    cpu_set = open_dataset(run_spec("baseline", "cpu").data_folder(), "validation", eval_transform(cpu.image_size))
    compare(f"cpu profile's built-in set at {cpu.image_size}", cpu_set, cpu.global_batch_size, (1,))
    gpu = get_profile("gpu")
    with tempfile.TemporaryDirectory() as folder:
        root = write_validation(Path(folder), args.images)
        ade_sized = open_dataset(root, "validation", eval_transform(gpu.image_size))
        checks = compare(f"ADE-sized pairs ({ADE_WIDTH}x{ADE_HEIGHT}) at {gpu.image_size}", ade_sized, 16, (1, 2))
    for count, seconds in checks.items():
        print(f"  at that rate ADE20k's {ADE20K_VAL_IMAGES} validation images take "
              f"{ADE20K_VAL_IMAGES * seconds / args.images:.0f} s with {count} thread(s)")


if __name__ == "__main__":
    main()
