"""The hand-out on a JupyterHub, as a room gets it: learners who are separate Unix accounts open the
nbgitpuller link of ``docs/workshop.md`` in a real browser against a real hub.

The room is real accounts (``tests.accounts``): an instructor and learners, each a Unix user with a home
of mode 0700. The instructor prefills the shared data cache (``segkit data prefill --profile tiny
--shared``: read-only to learners, hashes recorded) and makes the class folder (mode 1777). A local
JupyterHub runs as root, as The Littlest JupyterHub does: DummyAuthenticator, LocalProcessSpawner (each
learner's server runs as their own Unix user), configurable-http-proxy started by the hub. Learners open
the workshop's link at once in Chromium (Playwright), its host and ``repo`` swapped for the local hub
and a clone of this repository (``branch`` and ``urlpath`` kept), log in, land in
``notebooks/00_baseline.ipynb`` pulled into their home, edit the parameters cell to ``profile = "tiny"``
as a learner would, add a cell that shares their run with the class, run everything and see the plots
and widgets. Then: each run is in its learner's home and no other learner can read or overwrite it; the
shared cache is byte for byte what the instructor left; the class table holds every learner's entry,
which no other learner can overwrite. Then the repository gets a new commit upstream, a learner opens
the link again, and nbgitpuller merges: the new file arrives, the learner's edits stay.

The kernels run this checkout's segkit (the venv's editable install). Tools missing (chromium,
configurable-http-proxy, jupyterhub, nbgitpuller) or not root skip the test, or fail it under
``SEGKIT_REQUIRE_TOOLS=1`` (``tests.conftest.skip_or_fail``). With ``-s`` it prints the time to first
plot, which ``docs/workshop.md`` quotes: two learners in the default suite, four with ``-m slow``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import nbformat
import pytest

from segkit import cache, scenes
from segkit.runs import Run
from segkit.teaching import classroom
from tests.accounts import Account, unix_accounts
from tests.conftest import REPO, skip_or_fail
from tests.system.conftest import (
    BUSY_PROMPT,
    free_port,
    gallery_of,
    loaded_images,
    plotly_points,
    save,
    screenshot_on_failure,
)

#: The hub's address in the workshop guide's link, replaced by the local hub's.
DOC_HUB = "https://HUB.example.org"
#: The learners of the default test (logged in at the same time), and of the four-learner timing (-m slow).
LEARNERS = ("ada", "grace")
MORE_LEARNERS = ("alan", "barbara", "edsger", "frances")
#: The file the repository gains upstream after the learners pulled it.
NEW_FILE = "day2.md"
#: What the learner types into the cell they add: where segkit comes from, and their run shared.
PROBE = ("import segkit; print('segkit from', segkit.__file__)\n"
         "from segkit.teaching import classroom; print('shared as', classroom.share(result.folder))")


def workshop_link() -> str:
    """The nbgitpuller link exactly as ``docs/workshop.md`` prints it."""
    guide = (REPO / "docs" / "workshop.md").read_text()
    links = re.findall(rf"{re.escape(DOC_HUB)}/hub/user-redirect/git-pull\?\S+", guide)
    assert len(links) == 1, f"docs/workshop.md should print one nbgitpuller link, found {links}"
    return links[0]


def local_link(hub_url: str, repo_url: str) -> str:
    """The workshop's link for the local hub and repository: same path, branch and urlpath."""
    parts = urlsplit(workshop_link())
    query = [(key, repo_url if key == "repo" else value) for key, value in parse_qsl(parts.query)]
    return f"{hub_url}{parts.path}?{urlencode(query, quote_via=quote, safe='')}"


def link_argument(name: str) -> str:
    return dict(parse_qsl(urlsplit(workshop_link()).query))[name]


def git(*args: str, cwd: Path | None = None, index: Path | None = None) -> str:
    identity = ["-c", "user.name=Instructor", "-c", "user.email=instructor@example.org"]
    env = {**os.environ, "GIT_INDEX_FILE": str(index)} if index else None
    return subprocess.run(["git", *identity, *args], cwd=cwd, env=env, check=True, capture_output=True, text=True,
                          timeout=60).stdout


@pytest.fixture(scope="module")
def upstream(room) -> Path:
    """A bare clone of this repository named as the link's ``urlpath`` expects (the folder nbgitpuller
    clones into is the repository's name), its branch at this checkout as it is: uncommitted changes to
    tracked files are committed there (with an index of its own, so this checkout is only read), so that
    the notebooks learners pull go with the segkit their kernels import."""
    folder_in_link = link_argument("urlpath").split("/")[2]  # lab/tree/FOLDER/notebooks/...
    bare = room.base / "upstream" / folder_in_link  # where every learner can read it
    git("clone", "--quiet", "--bare", str(REPO), str(bare))
    head = git("-C", str(REPO), "rev-parse", "HEAD").strip()
    snapshot, index = ["--git-dir", str(bare), "--work-tree", str(REPO)], bare / "snapshot-index"
    git(*snapshot, "read-tree", head, index=index)
    git(*snapshot, "add", "--update", index=index)
    tree = git(*snapshot, "write-tree", index=index).strip()
    commit = head
    if tree != git("--git-dir", str(bare), "rev-parse", f"{head}^{{tree}}").strip():
        commit = git("--git-dir", str(bare), "commit-tree", tree, "-p", head, "-m", "uncommitted changes").strip()
    git("--git-dir", str(bare), "update-ref", f"refs/heads/{link_argument('branch')}", commit)
    subprocess.run(["chmod", "-R", "a+rX", str(bare.parent)], check=True)
    return bare


def commit_upstream(bare: Path, work: Path, name: str, text: str) -> None:
    """A new commit on the link's branch upstream, adding one file (as the instructor pushes one)."""
    branch = link_argument("branch")
    git("clone", "--quiet", "--depth", "1", "--branch", branch, bare.as_uri(), str(work))
    (work / name).write_text(text)
    git("add", name, cwd=work)
    git("commit", "--quiet", "-m", f"add {name}", cwd=work)
    git("push", "--quiet", "origin", branch, cwd=work)


def lab_settings(home: Path) -> None:
    """JupyterLab settings in a learner's home: every cell rendered (JupyterLab 4 renders only the
    cells in view, so outputs below could not be checked), no news pop-up."""
    for plugin, values in (("notebook-extension/tracker", {"windowingMode": "none"}),
                           ("apputils-extension/notification", {"fetchNews": "false"})):
        path = home / ".jupyter" / "lab" / "user-settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


HUB_CONFIG = """\
c = get_config()  # noqa: F821
c.JupyterHub.authenticator_class = "dummy"
# Each learner's server runs as their own Unix user, as on The Littlest JupyterHub (the hub runs as root).
c.JupyterHub.spawner_class = "localprocess"
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{root}/cookie_secret"
# The link starts the learner's server itself, without a "Launch server" click.
c.JupyterHub.implicit_spawn_seconds = 0.5
c.ConfigurableHTTPProxy.command = ["{proxy}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.pid_file = "{root}/proxy.pid"
c.Spawner.ip = "127.0.0.1"
c.Spawner.cmd = ["{singleuser}"]
c.Spawner.args = ["--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
# The instructor's prefilled cache (read-only to learners) and the class folder; one thread per kernel.
c.Spawner.environment = {{"SEGKIT_DATA": "{cache}", "SEGKIT_CLASS": "{class_folder}", "OMP_NUM_THREADS": "1"}}
"""


@dataclass(frozen=True)
class Room:
    """The accounts of a session and the folders the instructor prepared."""

    base: Path  # where homes and shared folders live (everyone can pass through it)
    instructor: Account
    learners: dict[str, Account]  # by role (LEARNERS and MORE_LEARNERS)
    cache: Path  # SEGKIT_DATA, prefilled by the instructor
    class_folder: Path  # SEGKIT_CLASS, mode 1777


@pytest.fixture(scope="module")
def room() -> Iterator[Room]:
    """The instructor and the learners; the cache prefilled and the class folder made, as the guide says."""
    with unix_accounts(("instructor", *LEARNERS, *MORE_LEARNERS)) as (accounts, _):
        instructor = accounts.pop("instructor")
        base = instructor.home.parent
        data = base / "segkit-data"
        data.mkdir()
        os.chown(data, instructor.uid, instructor.gid)
        prefill = instructor.run(sys.executable, "-m", "segkit", "data", "prefill", "--profile", "tiny", "--shared",
                                 SEGKIT_DATA=str(data), PYTHONPATH=str(REPO))
        assert prefill.returncode == 0, prefill.stderr
        class_folder = base / "segkit-class"
        class_folder.mkdir()
        class_folder.chmod(0o1777)
        for account in accounts.values():
            lab_settings(account.home)
            # The test's upstream is a local folder owned by root, not a GitHub URL: git clones another
            # account's repository only where the account says it trusts it.
            upstream = base / "upstream" / link_argument("urlpath").split("/")[2]
            (account.home / ".gitconfig").write_text(f"[safe]\n\tdirectory = {upstream}\n")
            subprocess.run(["chown", "-R", f"{account.uid}:{account.gid}", str(account.home)], check=True)
        yield Room(base, instructor, accounts, data, class_folder)


@pytest.fixture(scope="module")
def hub(room) -> Iterator[tuple[str, Path]]:
    """A JupyterHub on free local ports, started as an instructor starts one; its URL and folder."""
    for module in ("jupyterhub", "nbgitpuller"):
        if importlib.util.find_spec(module) is None:
            skip_or_fail(f"{module} is not installed (pip install -e '.[hub]')")
    proxy = shutil.which("configurable-http-proxy")
    if proxy is None:
        skip_or_fail("no configurable-http-proxy for the hub test (npm install -g configurable-http-proxy)")
    root = room.base / "hub"
    root.mkdir()
    port = free_port()
    (root / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
        port=port, hub_port=free_port(), api_port=free_port(), root=root, proxy=proxy,
        singleuser=Path(sys.executable).with_name("jupyterhub-singleuser"), cache=room.cache,
        class_folder=room.class_folder))
    env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(32)}
    log = (root / "hub.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(root / "jupyterhub_config.py")],
                              cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/hub/api", timeout=2) as answer:
                if answer.status == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterHub did not start: {(root / 'hub.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, root
    finally:
        # The hub stops the learners' servers and the proxy it started, then exits.
        server.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=60)
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


def open_link(page, link: str, name: str | None) -> None:
    """Open the link; a learner not logged in yet gets the hub's login form first."""
    page.goto(link)
    if name is not None:
        page.locator("#username_input").fill(name)
        page.locator("#password_input").fill("workshop")
        page.locator("#login_submit").click()


def wait_for_notebook(page) -> None:
    """The spawn, the pull and the redirect into JupyterLab are done: the notebook is open, its kernel idle."""
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=180_000)
    page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)


def edit_notebook(page) -> None:
    """What a learner does before Run All: ``profile = "tiny"`` in the parameters cell (a double click
    on ``cpu`` and typing), and a cell of their own at the end."""
    profile_line = page.locator(".jp-Notebook .jp-CodeCell .cm-line", has_text=re.compile(r"^profile: str = "))
    profile_line.get_by_text('"cpu"', exact=True).dblclick()
    page.keyboard.type("tiny")
    last = page.locator(".jp-Notebook .jp-Cell").last
    last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below, in edit mode after Enter
    page.keyboard.press("Enter")
    page.keyboard.type(PROBE)
    page.keyboard.press("Escape")


def start_run_all(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def wait_until_all_ran(page) -> None:
    """Every code cell has an execution count and none is still waiting."""
    page.wait_for_function(
        """busy => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p)) && !prompts.includes(busy);
        }""", arg=BUSY_PROMPT, timeout=400_000, polling=500)


def check_outputs(page, notebook: Path) -> None:
    """No error in the browser or in the saved file; the plots drawn; the widgets there and working."""
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [text for text in errors.all_inner_texts() if "Error" in text or "Traceback" in text]
    assert not tracebacks, tracebacks[0][:500]
    saved = nbformat.read(notebook, as_version=4)
    assert not [output for cell in saved.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert page.locator(".js-plotly-plot .main-svg").count() >= 4
    assert plotly_points(page) > 0  # the training curves, drawn with their points
    assert len(loaded_images(gallery_of(page))) >= 3  # the prediction gallery's images
    assert page.get_by_role("button", name="Train this recipe").count() == 1  # the recipe lab
    # The learner's own cell ran in the kernel, on this checkout's segkit, and shared the run.
    probe = page.locator(".jp-CodeCell").last.locator(".jp-OutputArea-output").inner_text().splitlines()
    assert probe[0].startswith("segkit from ") and Path(probe[0].split()[-1]).is_relative_to(REPO), probe
    assert probe[1].startswith("shared as ") and probe[1].endswith(f"--{RUN_NAME}.json"), probe


#: The run 00 trains on the tiny profile.
RUN_NAME = "baseline-tiny-seed17"


def parameters_source(notebook: Path) -> str:
    return next(cell.source for cell in nbformat.read(notebook, as_version=4).cells
                if "parameters" in cell.metadata.get("tags", []))


def run_the_room(browser, hub, upstream, room: Room, roles: tuple[str, ...]) -> tuple[dict, float]:  # noqa: F811
    """The learners of ``roles`` open the link at once, edit, Run All and see everything; returns their pages
    (by role) and the seconds from opening the link to the first learner's first plot."""
    url, _ = hub
    link = local_link(url, upstream.as_uri())
    learners = {role: room.learners[role] for role in roles}
    pages = {role: browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for role in roles}
    opened = time.monotonic()
    # The learners open the link at the same time: login, spawn, clone, JupyterLab.
    for role, page in pages.items():
        with screenshot_on_failure(page, f"hub-login-{role}"):
            open_link(page, link, learners[role].name)
    for role, page in pages.items():
        with screenshot_on_failure(page, f"hub-open-{role}"):
            wait_for_notebook(page)
            assert page.url.endswith(f"/user/{learners[role].name}/lab/tree/{notebook_in_link()}"), page.url
    notebook_open = time.monotonic()
    for role, page in pages.items():
        with screenshot_on_failure(page, f"hub-edit-{role}"):
            edit_notebook(page)
            start_run_all(page)
    pages[roles[0]].wait_for_selector(".js-plotly-plot .main-svg", timeout=300_000)
    first_plot = time.monotonic()
    for role, page in pages.items():
        notebook = learners[role].home / notebook_in_link()
        with screenshot_on_failure(page, f"hub-run-{role}"):
            wait_until_all_ran(page)
            save(page)
            check_outputs(page, notebook)
            assert 'profile: str = "tiny"' in parameters_source(notebook)
    print(f"\nhub: time to first plot {first_plot - opened:.0f} s after opening the link "
          f"(notebook open after {notebook_open - opened:.0f} s; edit, Run All and the first figure "
          f"{first_plot - notebook_open:.0f} s); {len(roles)} learners at once, each their own Unix account, "
          f"{os.cpu_count()} cores")
    check_isolation(room, roles)
    return pages, first_plot - opened


def notebook_in_link() -> Path:
    return Path(*link_argument("urlpath").split("/")[2:])  # segkit/notebooks/00_baseline.ipynb


def check_isolation(room: Room, roles: tuple[str, ...]) -> None:
    """Each run is its learner's, finished, unreadable and unwritable by the others; the shared cache is what
    the instructor left and holds nothing of theirs; the class table holds each learner's entry, owned by them."""
    learners = [room.learners[role] for role in roles]
    for learner in learners:
        run = learner.home / notebook_in_link().parent / "runs" / RUN_NAME
        assert Run.load(run).status == "finished", run
        other = next(account for account in learners if account != learner)
        for code in (f"open({str(run / 'metrics.json')!r}).read()", f"open({str(run / 'metrics.json')!r}, 'a')",
                     f"import os; os.listdir({str(run)!r})"):
            assert "PermissionError" in other.python(code).stderr, (other.name, code)
    manifest = cache.read_manifest(room.cache)
    assert sorted(path.name for path in room.cache.iterdir()) == sorted([cache.MANIFEST, *manifest]), \
        "a learner wrote into the shared cache"
    for name, record in manifest.items():
        assert cache.tree_sha256(room.cache / name) == record["sha256"], name
    assert scenes.entry_name(16, 8) in manifest  # the tiny profile's set: what the learners' runs read
    for learner in learners:
        entry = room.class_folder / f"{learner.name}--{RUN_NAME}.json"
        assert entry.stat().st_uid == learner.uid
    table = learners[0].run(sys.executable, "-m", "segkit", "class", SEGKIT_CLASS=str(room.class_folder))
    assert table.returncode == 0, table.stderr
    for learner in learners:
        assert f" {learner.name} " in table.stdout and "not verified" not in table.stdout, table.stdout
    theirs = room.class_folder / f"{learners[0].name}--{RUN_NAME}.json"
    replace = learners[1].python(f"import os; open('x', 'w').write('{{}}'); os.replace('x', {str(theirs)!r})")
    assert "PermissionError" in replace.stderr and classroom.read_entries(room.class_folder)


def test_two_learners_pull_run_and_keep_their_edits_across_a_new_pull(browser, hub, upstream, room, tmp_path):  # noqa: F811
    pages, _ = run_the_room(browser, hub, upstream, room, LEARNERS)
    first = LEARNERS[0]
    learner = room.learners[first]
    # Upstream gains a file; the first learner opens the link again (already logged in).
    commit_upstream(upstream, tmp_path / "instructor", NEW_FILE, "# Day 2\n")
    page = pages[first]
    with screenshot_on_failure(page, "hub-pull-again"):
        open_link(page, local_link(hub[0], upstream.as_uri()), None)
        wait_for_notebook(page)
        clone = learner.home / notebook_in_link().parts[0]
        assert (clone / NEW_FILE).read_text() == "# Day 2\n"
        notebook = clone / notebook_in_link().relative_to(notebook_in_link().parts[0])
        assert 'profile: str = "tiny"' in parameters_source(notebook)
        assert nbformat.read(notebook, as_version=4).cells[-1].source == PROBE
        # And JupyterLab shows the learner's version.
        shown = page.locator(".jp-Notebook .jp-CodeCell .cm-line", has_text=re.compile(r"^profile: str = "))
        assert shown.inner_text().startswith('profile: str = "tiny"')
    for page in pages.values():
        page.context.close()


@pytest.mark.slow
def test_four_learners_at_once(browser, hub, upstream, room):  # noqa: F811
    """The time to first plot with four learners at once (docs/workshop.md quotes it)."""
    pages, _ = run_the_room(browser, hub, upstream, room, MORE_LEARNERS)
    for page in pages.values():
        page.context.close()
