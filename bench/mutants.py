"""The mutation check: break segkit on purpose, one named bug at a time, and make sure a test fails.

Each mutant replaces one exact piece of source in a temporary copy of the repository (the
checkout is never touched) and runs the tests that should catch it. A mutant is *killed* when
those tests fail, and *survives* when they pass: a survivor is a bug the suite would let through.

    .venv/bin/python bench/mutants.py                 # every mutant; exits 1 if one survives
    .venv/bin/python bench/mutants.py --only "Dice counts absent classes"

Prints one line per mutant and the score (killed / total).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # path in the repository
    original: str  # must occur exactly once in the file
    mutated: str
    tests: tuple[str, ...]  # pytest node ids or -k expressions that must catch it


MUTANTS = [
    Mutant("SAM ascent zeroed", "segkit/functional.py",
           "e_w = param.grad * scale.to(param)", "e_w = param.grad * scale.to(param) * 0",
           ("tests/library/test_functional.py",)),
    Mutant("SAM counter restarts on resume", "segkit/algorithms.py",
           "optimizer.step_index = int(state.timestamp.batch)",
           "optimizer.step_index = getattr(self, 'own_count', 0); self.own_count = optimizer.step_index + 1",
           ("tests/system/test_reliability.py::test_medium_resumes_on_an_odd_step_with_sams_phase",)),
    Mutant("EMA weights not the ones saved and evaluated", "segkit/algorithms.py",
           "if isinstance(algorithm, EMA) and algorithm.ema_started and not algorithm.ema_weights_active:",
           "if False:",
           ("tests/library/test_algorithms.py", "tests/library/test_inference.py")),
    Mutant("MixUp masks not permuted", "segkit/functional.py",
           "return mixed, MixedMasks(masks, masks[permutation], torch.tensor(1.0 - mixing",
           "return mixed, MixedMasks(masks, masks, torch.tensor(1.0 - mixing",
           ("tests/library/test_functional.py",)),
    Mutant("Dice counts absent classes", "segkit/losses.py",
           "return (dice * present).sum() / present.sum().clamp_min(1)", "return dice.mean()",
           ("tests/library/test_losses.py",)),
    Mutant("ignored pixels counted in mIoU", "segkit/metrics.py",
           "valid = target != ignore_index", "valid = target == target",
           ("tests/library/test_metrics.py", "segkit/metrics.py")),
    Mutant("cosine replaced by a constant rate", "segkit/engine.py",
           'schedulers = [CosineAnnealingScheduler(t_max="1dur", alpha_f=0.0)] if plan.lr_schedule == "cosine" '
           'else []', "schedulers = []",
           ("tests/library/test_engine.py::test_the_learning_rate_follows_the_cosine_schedule",)),
    Mutant("scaling rule skips the EMA half-life", "segkit/recipes.py",
           "ema_half_life=None if recipe.ema_half_life is None else scaled_batches(recipe.ema_half_life),",
           "ema_half_life=recipe.ema_half_life,",
           ("tests/library/test_recipes.py",)),
    Mutant("0 -> ignore mapping off by one", "segkit/transforms.py",
           "return mask.as_subclass(torch.Tensor).long() - 1", "return mask.as_subclass(torch.Tensor).long()",
           ("tests/library/test_transforms.py",)),
    Mutant("channels-last not applied", "segkit/algorithms.py",
           "if recipe.channels_last:", "if False:",
           ("tests/library/test_algorithms.py", "tests/library/test_recipes.py")),
    Mutant("checkpoint written in place, not atomically", "segkit/runs.py",
           "        with os.fdopen(descriptor, \"wb\") as file:\n            write(file)",
           "        os.close(descriptor)\n        with open(path, \"wb\") as file:\n            write(file)\n"
           "        with open(path, \"rb\") as source, open(temporary, \"wb\") as file:\n"
           "            file.write(source.read())",
           ("tests/library/test_runs.py", "tests/system/test_reliability.py::test_kill_and_resume")),
    Mutant("Composer loads the run folder's checkpoint, not the checked copy", "segkit/engine.py",
           "load_path=str(checked) if checked else None,",
           "load_path=str(folder / CHECKPOINT_FILE) if checked else None,",
           ("tests/system/test_reliability.py::test_checkpoint_swapped_between_check_and_load_is_never_unpickled",)),
    Mutant("SAM's rho not scaled to the profile", "segkit/recipes.py",
           "sam_rho=None if recipe.sam_rho is None else round(recipe.sam_rho * profile.sam_rho_scale, 4),",
           "sam_rho=recipe.sam_rho,",
           ("tests/library/test_recipes.py",)),
    Mutant("raw-weight evaluation disturbs the run's randomness", "segkit/probes.py",
           "    with torch.random.fork_rng(devices=[]):\n", "    if True:\n",
           ("tests/library/test_engine.py::test_raw_weights_are_evaluated_beside_the_ema",)),
    Mutant("test-time augmentation does not flip back", "segkit/inference.py",
           "                probabilities = probabilities.flip(-1)", "                pass",
           ("tests/library/test_inference.py::test_augmented_prediction_undoes_the_flip",)),
    Mutant("pictures drawn without their colours", "segkit/teaching/pictures.py",
           "    if isinstance(value, str):\n        found", "    if False:\n        found",
           ("tests/teaching/test_pictures.py",)),
    Mutant("pages keep plotly's JSON as text", "segkit/teaching/pages.py",
           "            if PLOTLY_MIME in data:\n                count += 1",
           "            if False:\n                count += 1",
           ("tests/teaching/test_pages.py",)),
]


def copy_repository(target: Path) -> None:
    for name in ("segkit", "tests", "notebooks"):
        shutil.copytree(REPO / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, target / name)


def run(mutant: Mutant, apply: bool = True) -> tuple[bool, float, str]:
    """Apply one mutant in a fresh copy and run its tests; return (tests failed, seconds, last line).
    With ``apply=False`` the copy is left as it is: its tests must pass."""
    with tempfile.TemporaryDirectory(prefix="segkit-mutant-") as folder:
        root = Path(folder)
        copy_repository(root)
        path = root / mutant.file
        text = path.read_text()
        if text.count(mutant.original) != 1:
            raise SystemExit(f"mutant {mutant.name!r}: the original text occurs {text.count(mutant.original)} times "
                             f"in {mutant.file}; update bench/mutants.py")
        if apply:
            path.write_text(text.replace(mutant.original, mutant.mutated))
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1",
               "SEGKIT_DATA": str(root / "cache")}
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider",
                               "--rootdir", str(root), *mutant.tests], cwd=root, env=env,
                              capture_output=True, text=True, timeout=900)
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        return done.returncode != 0, time.monotonic() - started, lines[-1] if lines else done.stderr[-200:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=None, help="mutant names to run")
    parser.add_argument("--skip-clean-run", action="store_true",
                        help="do not first check that the chosen tests pass on the unmutated code")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
    killed = 0
    began = time.monotonic()
    if not args.skip_clean_run:  # a test that fails anyway would "kill" every mutant
        tests = tuple(dict.fromkeys(test for mutant in chosen for test in mutant.tests))
        failed, seconds, last = run(Mutant("none", chosen[0].file, chosen[0].original, "", tests), apply=False)
        print(f"{'FAILED  ' if failed else 'clean   '} {'(no mutation: the tests must pass)':52s} {seconds:5.0f} s  "
              f"{last}", flush=True)
        if failed:
            sys.exit(2)
    for mutant in chosen:
        caught, seconds, last = run(mutant)
        killed += caught
        print(f"{'killed  ' if caught else 'SURVIVED'} {mutant.name:52s} {seconds:5.0f} s  {last}", flush=True)
    print(f"score: {killed}/{len(chosen)} mutants killed in {time.monotonic() - began:.0f} s")
    sys.exit(0 if killed == len(chosen) else 1)


if __name__ == "__main__":
    main()
