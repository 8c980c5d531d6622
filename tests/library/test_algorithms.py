"""Each algorithm of a recipe really acts in a short training run, and SAM checkpoints right."""

from __future__ import annotations

import torch
from composer import Callback
from composer.algorithms import EMA

from segkit.algorithms import SegmentationMixUp
from segkit.engine import train
from segkit.losses import MixedMasks
from segkit.spec import run_spec


class Spy(Callback):
    """Records what the trainer does, batch by batch."""

    def __init__(self):
        self.forwards_per_batch: list[int] = []
        self.batches: list = []
        self.channels_last: list[bool] = []
        self.eval_weights_are_ema: list[bool] = []
        self._forwards = 0
        self._averaged: dict = {}
        self._trained: dict = {}

    def batch_start(self, state, logger):
        self._forwards = 0

    def before_forward(self, state, logger):
        self._forwards += 1
        self.batches.append(state.batch)
        conv = state.model.module.backbone.conv1.weight
        self.channels_last.append(conv.is_contiguous(memory_format=torch.channels_last))

    def batch_end(self, state, logger):
        self.forwards_per_batch.append(self._forwards)
        # Algorithms act before callbacks: EMA has updated its average for this batch by now.
        ema = next(a for a in state.algorithms if isinstance(a, EMA))
        self._averaged = {n: p.clone() for n, p in ema.ema_model.named_parameters_dict.items()}
        self._trained = {n: p.detach().clone() for n, p in state.model.named_parameters()}

    def eval_start(self, state, logger):
        live = dict(state.model.named_parameters())
        self.eval_weights_are_ema.append(
            all(torch.equal(live[n], v) for n, v in self._averaged.items())
            and not all(torch.equal(live[n], v) for n, v in self._trained.items()))


def test_medium_algorithms_act(tmp_path, scenes_root):
    spy = Spy()
    result = train(run_spec("medium", "tiny", scenes_root, duration="4ba"), save_folder=tmp_path, callbacks=[spy],
                   print_progress=False)
    # SAM (interval 2): every second step takes a second forward-backward at w + e(w).
    assert spy.forwards_per_batch == [1, 2, 1, 2]
    # MixUp: every training forward sees mixed float images and a two-mask target.
    assert all(isinstance(target, MixedMasks) and images.dtype == torch.float32 for images, target in spy.batches)
    assert any(0.5 <= target.lam < 1 for _, target in spy.batches)
    # Channels-last: the network's weights are NHWC during training.
    assert all(spy.channels_last)
    # EMA: evaluation runs on the averaged weights.
    assert spy.eval_weights_are_ema == [True, True]
    assert 0 < result.run.history[-1]["pixel_accuracy"] <= 100


def test_model_file_holds_the_ema_weights(tmp_path, scenes_root):
    result = train(run_spec("mild", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path, print_progress=False)
    saved = torch.load(result.folder / "model.pt", weights_only=True)
    checkpoint = torch.load(result.folder / "checkpoints" / "latest.pt", weights_only=False)
    ema = dict(checkpoint["state"]["algorithms"])["EMA"]  # (name, state) pairs
    assert ema["ema_weights_active"] is False
    averaged = ema["ema_model"]["named_parameters_dict"]
    for name, value in averaged.items():
        assert torch.equal(saved[name.removeprefix("module.")], value), name
    trained = checkpoint["state"]["model"]
    assert any(not torch.equal(trained[n], v) for n, v in averaged.items())  # training weights differ


def test_mixup_draws_like_composer():
    from types import SimpleNamespace

    import numpy as np
    from composer.algorithms.mixup.mixup import _gen_mixing_coef

    mixup = SegmentationMixUp(alpha=0.2)
    state = SimpleNamespace(batch=(torch.zeros(4, 3, 2, 2), torch.zeros(4, 2, 2, dtype=torch.long)))
    np.random.seed(0)
    composers = _gen_mixing_coef(0.2)  # Composer's own draw, from the same generator state
    np.random.seed(0)
    mixup.apply(None, state, None)
    assert mixup.last_mixing == composers
    assert isinstance(state.batch[1], MixedMasks) and state.batch[1].lam == 1 - mixup.last_mixing


def test_model_file_holds_a_hand_computed_average(tmp_path, scenes_root):
    """On the tiny profile mild's EMA has a half-life of 1 batch, updated every batch: smoothing 1/2.
    Composer's EMA starts at the end of the first step, from the weights w1 it has then, so after three
    steps model.pt must hold w1/4 + w2/4 + w3/2 (w_k: the weights after step k; w0, the initial
    weights, do not enter)."""

    class Trajectory(Callback):
        weights: list = []

        def fit_start(self, state, logger):
            self.weights.append({n: p.detach().clone() for n, p in state.model.module.named_parameters()})

        def batch_end(self, state, logger):
            self.weights.append({n: p.detach().clone() for n, p in state.model.module.named_parameters()})

    spy = Trajectory()
    result = train(run_spec("mild", "tiny", scenes_root, duration="3ba"), save_folder=tmp_path, print_progress=False,
                   callbacks=[spy])
    assert result.run.info["plan"]["ema_half_life"] == "1ba" and len(spy.weights) == 4
    saved = torch.load(result.folder / "model.pt", weights_only=True)
    w0, w1, w2, w3 = spy.weights
    for name in w0:
        expected = w1[name] / 4 + w2[name] / 4 + w3[name] / 2
        assert torch.allclose(saved[name], expected, atol=1e-6), name
    assert not torch.allclose(saved["head.classifier.1.weight"], w3["head.classifier.1.weight"])
