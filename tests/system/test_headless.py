"""The headless runner: real kernels, real papermill, and kernels that misbehave on purpose.

The first test is the main job's hang (jupyter/nbclient#312): cells that end on a large update of an
``ipywidgets.Output`` strand their ``execute_reply`` in nbclient's shell socket, and nbclient's
unbounded wait never returns. The others make a kernel misbehave from inside (a cell patches it) and
check that each watchdog fires with one line naming the cell, and that a healthy cell outlives them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from segkit.errors import SegkitError
from segkit.teaching.headless import (
    KernelStalled,
    Watchdogs,
    current_python_kernel,
    execute_notebook,
    run_all,
    run_notebook,
)
from tests.conftest import REPO

#: Fast watchdogs, so that a misbehaving kernel is caught in seconds.
QUICK = Watchdogs(reply_poll=0.2, start_grace=1.0, idle_grace=1.0)

WIDE_OUTPUT = '''\
import ipywidgets
from IPython.display import display

def figure(points, title):
    xs = list(range(points))
    return {"application/vnd.plotly.v1+json": {"data": [{"type": "scatter", "x": xs, "y": xs}],
                                               "layout": {"title": {"text": title}}},
            "text/plain": title}

def wide_update():
    output = ipywidgets.Output()
    display(output)
    with output:
        output.clear_output(wait=True)
        display(figure(50_000, "wide"), raw=True)  # the cell ends while the client handles this
'''

LIVE_CURVES = '''\
from segkit.teaching.plots import LiveCurves
from segkit.runs import Run

curves = LiveCurves("hang-check", "hot", steps_per_epoch=2, interval=0, live=True)  # redraw as in JupyterLab
curves.show()
for step in range(1, 30):
    curves("batch", {"step": step, "epoch": step // 2, "wall_time": step / 10, "train_loss": 1 / step})
curves("eval", {"epoch": 1, "step": 30, "wall_time": 3.0, "miou": 10.0, "pixel_accuracy": 50.0,
                "val_loss": 1.0, "train_loss": 0.5, "images_per_second": 4.0})
run = Run(folder=Path("hang-check"), info={"recipe": {"name": "hot"}}, history=curves.data.history)
curves.finish(run)
'''

NEVER_STARTS = '''\
import asyncio
kernel = get_ipython().kernel
async def wedged(*args, **kwargs):  # every later request is read and never started
    await asyncio.Event().wait()
kernel.dispatch_shell = wedged
'''

NO_REPLY = '''\
kernel = get_ipython().kernel
send = kernel.session.send
def drop_one_reply(stream, msg_or_type, *args, **kwargs):  # this cell's own reply is lost; 'idle' is not
    if msg_or_type == "execute_reply" and not dropped:
        dropped.append(msg_or_type)
        return None
    return send(stream, msg_or_type, *args, **kwargs)
dropped = []
kernel.session.send = drop_one_reply
'''


def write_notebook(path: Path, *sources: str) -> Path:
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, path)
    return path


@pytest.fixture(scope="module")
def kernel():
    with current_python_kernel() as name:
        yield name


@pytest.mark.timeout(60)
def test_cells_ending_on_a_large_output_update_finish_promptly(tmp_path):
    """Before the fix this hung: 4 of 4 such cells stranded their reply (the pytest timeout stops it)."""
    imports = "from pathlib import Path\n" + WIDE_OUTPUT
    write_notebook(tmp_path / "00_baseline.ipynb", imports, *["wide_update()"] * 4, LIVE_CURVES)
    outcomes = run_all(tmp_path / "out", only=["00_baseline"], parameters={"profile": "tiny"},
                       notebooks_dir=tmp_path)
    assert outcomes[0].error is None
    book = nbformat.read(tmp_path / "out" / "00_baseline.ipynb", as_version=4)
    # Each cell takes well under a second of work; a stranded reply would hold it until the pytest timeout.
    assert max(cell.metadata.papermill.duration for cell in book.cells) < 10
    final = book.cells[-1].outputs
    assert any("final mIoU 10.00" in o.get("data", {}).get("text/plain", "") for o in final)


def test_a_healthy_cell_longer_than_every_watchdog_succeeds(tmp_path, kernel):
    source = write_notebook(tmp_path / "long.ipynb", "import time\ntime.sleep(3)\nprint('slept')")
    execute_notebook(source, tmp_path / "out.ipynb", {}, kernel, watchdogs=QUICK)
    book = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert book.cells[0].outputs[0]["text"] == "slept\n"


def test_a_cell_the_kernel_never_starts_fails_in_one_line(tmp_path, kernel):
    source = write_notebook(tmp_path / "wedged.ipynb", NEVER_STARTS, "print('never runs')")
    began = time.monotonic()
    with pytest.raises(KernelStalled) as failure:
        execute_notebook(source, tmp_path / "out.ipynb", {}, kernel, watchdogs=QUICK)
    assert str(failure.value) == ("cell 1 (\"print('never runs')\"): the kernel is alive but did not start "
                                  "this cell within 2 s")
    assert time.monotonic() - began < 30
    assert (tmp_path / "out.ipynb").is_file()  # saved up to where it stopped


def test_a_finished_cell_whose_reply_never_comes_fails_and_its_notebook_runs_once_more(tmp_path, kernel, capsys):
    source = write_notebook(tmp_path / "lost.ipynb", NO_REPLY, "print('second cell')")
    with pytest.raises(KernelStalled, match=r"^cell 0 \('kernel = get_ipython\(\).kernel'\): the kernel finished "
                                            r"this cell \(it went idle\) but its reply did not arrive within 1 s$"):
        execute_notebook(source, tmp_path / "out.ipynb", {}, kernel, watchdogs=QUICK)

    error = run_notebook("lost", source, tmp_path / "out.ipynb", {}, kernel, watchdogs=QUICK)
    assert error.startswith("notebook lost.ipynb stopped in cell 0 ('kernel = get_ipython().kernel'): the kernel "
                            "finished this cell")
    assert capsys.readouterr().out.count("running the notebook again") == 1  # once, not forever


def test_the_main_job_reruns_a_stalled_notebook_and_names_it(tmp_path):
    """The first attempt loses a reply, the rerun (a new kernel) does not: the notebook succeeds."""
    marker = tmp_path / "first-attempt-done"
    once = (f"from pathlib import Path\nmarker = Path({str(marker)!r})\nif not marker.exists():\n"
            f"    marker.touch()\n" + "\n".join(f"    {line}" for line in NO_REPLY.splitlines()))
    write_notebook(tmp_path / "00_baseline.ipynb", once, "print('done')")
    outcomes = run_all(tmp_path / "out", only=["baseline"], parameters={"profile": "tiny"},
                       notebooks_dir=tmp_path, watchdogs=QUICK)
    assert outcomes[0].error is None and marker.exists()

    write_notebook(tmp_path / "00_baseline.ipynb", NO_REPLY)  # stalls on every attempt
    with pytest.raises(SegkitError, match=r"^notebook 00_baseline.ipynb stopped in cell 1 .*its reply did not "
                                          r"arrive within 1 s; its output so far is in "):
        run_all(tmp_path / "out2", only=["baseline"], parameters={"profile": "tiny"}, notebooks_dir=tmp_path,
                watchdogs=QUICK)


def test_papermills_command_line_runs_the_segkit_engine_headless(tmp_path, kernel):
    """`papermill --engine segkit IN OUT`, as the README gives it: found through the package's entry point."""
    source = write_notebook(tmp_path / "in.ipynb", "import os\nprint(os.environ.get('SEGKIT_HEADLESS'))")
    papermill_cli = Path(sys.executable).with_name("papermill")
    command = [str(papermill_cli), "--engine", "segkit", "-k", kernel, str(source), str(tmp_path / "out.ipynb")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    book = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert book.cells[0].outputs[0]["text"] == "1\n"  # the kernel runs headless: live curves stay quiet
    readme = (REPO / "README.md").read_text()
    assert "papermill --engine segkit notebooks/03_hot.ipynb" in readme


LATE_IDLE = '''\
import time
kernel = get_ipython().kernel
publish = kernel._publish_status
def late_idle(status, *args, **kwargs):  # a loaded machine: this cell's 'idle' comes 3 s after its reply
    if status == "idle" and not delayed:
        delayed.append(status)
        time.sleep(3)
    return publish(status, *args, **kwargs)
delayed = []
kernel._publish_status = late_idle
'''


def test_a_late_idle_after_the_reply_does_not_fail_a_healthy_cell(tmp_path, kernel):
    """papermill's client raises when 'idle' comes more than its IOPub timeout after the reply; segkit's warns."""
    source = write_notebook(tmp_path / "late.ipynb", LATE_IDLE, "print('next cell')")
    watchdogs = Watchdogs(reply_poll=0.2, start_grace=1.0, idle_grace=1.0, iopub_grace=1)
    execute_notebook(source, tmp_path / "out.ipynb", {}, kernel, watchdogs=watchdogs)
    book = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert book.cells[1].outputs[0]["text"] == "next cell\n"


def test_when_the_output_notebook_cannot_be_saved_that_is_the_error_not_a_stalled_kernel(tmp_path, kernel):
    """The output path is replaced by a folder while a cell runs: papermill's next save fails inside the
    client's output task. That failure is what the run reports, at once, not 'went idle' a grace later."""
    import threading

    import papermill

    source = write_notebook(tmp_path / "long.ipynb", "import time\nfor i in range(40):\n    print(i, flush=True)\n"
                                                     "    time.sleep(0.25)")
    output = tmp_path / "out.ipynb"

    def replace_output_mid_cell() -> None:
        deadline = time.monotonic() + 30
        while not output.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # the cell is running and printing
        output.unlink()
        output.mkdir()

    replacer = threading.Thread(target=replace_output_mid_cell)
    replacer.start()
    began = time.monotonic()
    with pytest.raises(IsADirectoryError) as failure:
        papermill.execute_notebook(source, output, kernel_name=kernel, engine_name="segkit", progress_bar=False,
                                   autosave_cell_every=1, watchdogs=QUICK)
    replacer.join()
    assert time.monotonic() - began < 9  # before the cell's own 10 s: reported as it happened
    # papermill's closing save fails the same way; behind it is the first failure, not a watchdog's verdict.
    chain, error = [], failure.value
    while error is not None:
        chain.append(error)
        error = error.__context__
    assert not [error for error in chain if isinstance(error, KernelStalled)], chain
    assert len([error for error in chain if isinstance(error, IsADirectoryError)]) >= 2, chain
