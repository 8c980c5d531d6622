"""Inference on a trained run: its weights reproduce the run's own last evaluation, from Python and the CLI."""

from __future__ import annotations

import pytest
import torch

from segkit.errors import ConfigError
from segkit.inference import evaluate, load_model, predict, predict_augmented
from tests.conftest import run_segkit


@pytest.fixture(scope="module")
def finished_run(tiny_run):
    return tiny_run


def test_evaluate_reproduces_the_last_evaluation_of_training(finished_run):
    scores = evaluate(finished_run.folder)  # model.pt holds the EMA weights that training evaluated
    assert scores["miou"] == pytest.approx(finished_run.miou, abs=1e-3)
    assert scores["pixel_accuracy"] == pytest.approx(finished_run.pixel_accuracy, abs=1e-3)


def test_evaluate_on_training_images_and_a_limit(finished_run):
    on_training = evaluate(finished_run.folder, split="training")
    first_two = evaluate(finished_run.folder, split="training", limit=2)
    assert 0 < on_training["pixel_accuracy"] <= 100 and first_two != on_training


def test_predict_gives_class_indices(finished_run):
    model, run = load_model(finished_run.folder)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    labels = predict(model, images)
    assert labels.shape == (2, 32, 32) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) < run.info["data"]["num_classes"]


def test_segkit_evaluate_prints_the_scores(finished_run):
    done = run_segkit("evaluate", str(finished_run.folder))
    assert done.returncode == 0, done.stderr
    assert f"mIoU {finished_run.miou:.2f}" in done.stdout


def test_data_with_other_classes_is_refused(finished_run, ade_root):
    with pytest.raises(ConfigError, match="has 150 classes; the run was trained on 16"):
        evaluate(finished_run.folder, data=ade_root)


class PerPixel(torch.nn.Module):
    """A 1x1 convolution: each pixel's logits depend on that pixel alone, so its prediction commutes
    with flipping the image, and with resizing a picture made of large flat blocks."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 1)
        generator = torch.Generator().manual_seed(0)
        torch.nn.init.normal_(self.conv.weight, generator=generator)
        torch.nn.init.normal_(self.conv.bias, generator=generator)

    def forward(self, images):
        return self.conv(images)


def test_augmented_prediction_undoes_the_flip():
    images = torch.randint(0, 256, (2, 3, 24, 40), dtype=torch.uint8)  # no symmetry to hide a missed flip
    plain = predict(PerPixel(), images)
    assert torch.equal(predict_augmented(PerPixel(), images, scales=(1.0,), flip=True), plain)
    assert torch.equal(predict_augmented(PerPixel(), images, scales=(1.0,), flip=False), plain)


def test_augmented_prediction_resizes_each_scale_back():
    blocks = torch.randint(0, 256, (1, 3, 4, 6), dtype=torch.uint8)
    images = blocks.repeat_interleave(16, 2).repeat_interleave(16, 3)  # (1, 3, 64, 96): 16-pixel flat blocks
    plain = predict(PerPixel(), images)
    augmented = predict_augmented(PerPixel(), images, scales=(0.5, 1.75), flip=True)
    assert augmented.shape == plain.shape == (1, 64, 96)
    assert (augmented == plain).float().mean() > 0.9  # only the block edges may differ


def test_evaluate_with_test_time_augmentation(finished_run):
    single = evaluate(finished_run.folder)
    augmented = evaluate(finished_run.folder, augmented=True)
    for scores in (single, augmented):
        per_class = torch.tensor(scores["iou_per_class"])
        assert len(per_class) == 16 and scores["miou"] == pytest.approx(float(per_class.nanmean()))
    assert augmented["miou"] != single["miou"]
    done = run_segkit("evaluate", str(finished_run.folder), "--augmented")
    assert done.returncode == 0 and f"mIoU {augmented['miou']:.2f}" in done.stdout, done.stderr


def test_evaluation_runs_where_the_run_trained_or_where_asked(finished_run, monkeypatch):
    """A CPU run evaluates on the CPU; a GPU run's folder read here (no CUDA) evaluates on the CPU too;
    asking for CUDA where there is none is one line."""
    from segkit.devices import torch_device

    model, run = load_model(finished_run.folder)
    assert next(model.parameters()).device == torch.device("cpu")
    if not torch.cuda.is_available():
        assert torch_device("gpu") == torch.device("cpu")
        with pytest.raises(ConfigError, match="device 'cuda': CUDA is not available here; use device 'cpu'"):
            evaluate(finished_run.folder, device="cuda")
    scores = evaluate(finished_run.folder, device="cpu", batch_size=3)  # another batch size: the same scores
    assert scores["miou"] == pytest.approx(run.final["miou"], abs=1e-3)


@pytest.mark.gpu
def test_evaluation_on_cuda_with_the_runs_precision(finished_run):
    """On a GPU machine: the same run evaluated on CUDA (fp32 here: its profile's precision) agrees with the CPU."""
    model, _ = load_model(finished_run.folder, device="cuda")
    assert next(model.parameters()).is_cuda
    on_gpu, on_cpu = evaluate(finished_run.folder, device="cuda"), evaluate(finished_run.folder, device="cpu")
    assert on_gpu["miou"] == pytest.approx(on_cpu["miou"], abs=0.5)
    assert evaluate(finished_run.folder, device="cuda", augmented=True)["miou"] > 0
