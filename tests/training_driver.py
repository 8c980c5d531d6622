"""Runs ``segkit.train`` in a process of its own, optionally with a fault at a chosen moment.

Used by tests/system/test_reliability.py to kill real training processes (SIGKILL, no cleanup) mid-epoch,
during evaluation or halfway through a checkpoint write.

    python tests/training_driver.py '{"recipe": "hot", "data": "...", "save_folder": "...",
                                      "run_name": "r", "duration": "3ep", "kill_at": ["eval", 2]}'
"""

from __future__ import annotations

import json
import os
import signal
import sys

from composer import Callback

import segkit.engine
from segkit.engine import train
from segkit.spec import run_spec


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(Callback):
    """SIGKILL this process at the n-th occurrence of a moment: "batch" end or "eval" batch start."""

    def __init__(self, moment: str, count: int):
        self.moment, self.count, self.seen = moment, count, 0

    def _tick(self, moment: str) -> None:
        if moment == self.moment:
            self.seen += 1
            if self.seen == self.count:
                die()

    def batch_end(self, state, logger):
        self._tick("batch")

    def eval_batch_start(self, state, logger):
        self._tick("eval")


def kill_during_checkpoint_write(count: int) -> None:
    """Make the count-th checkpoint write die halfway through writing its bytes."""
    real_write, calls = segkit.engine.atomic_write, []

    def dying_write(path, write):
        calls.append(path)
        if len(calls) < count:
            return real_write(path, write)

        def half_then_die(file):
            import io

            buffer = io.BytesIO()
            write(buffer)
            file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            file.flush()
            die()

        return real_write(path, half_then_die)

    segkit.engine.atomic_write = dying_write


def kill_before_weights() -> None:
    """Die after training and its last checkpoint, before model.pt is written."""
    segkit.engine.save_weights = lambda trainer, path: die()


def main() -> None:
    options = json.loads(sys.argv[1])
    callbacks = []
    moment, count = options.pop("kill_at", (None, 0))
    if moment == "checkpoint":
        kill_during_checkpoint_write(count)
    elif moment == "before weights":
        kill_before_weights()
    elif moment:
        callbacks.append(KillAt(moment, count))
    spec = run_spec(options.pop("recipe", "baseline"), options.pop("profile", "tiny"), options.pop("data"),
                    **{key: options.pop(key) for key in ("seed", "duration", "weights") if key in options})
    result = train(spec, callbacks=callbacks, **options)
    print(json.dumps({"miou": result.miou}))


if __name__ == "__main__":
    main()
