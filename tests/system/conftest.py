"""What the system tests share: a real Chromium for Playwright (``browser``), and helpers to read a page."""

from __future__ import annotations

import contextlib
import importlib.metadata
import shutil
import socket
import venv
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, skip_or_fail

ARTIFACTS = REPO / "test-artifacts"
#: JupyterLab's prompt of a cell waiting or running.
BUSY_PROMPT = "[*]:"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        skip_or_fail("no chromium for the browser tests (Debian: apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(executable_path=path, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@contextlib.contextmanager
def screenshot_on_failure(page, name: str) -> Iterator[None]:
    """On a failing step, keep a screenshot of the whole page for the CI log, and name it in the failure."""
    try:
        yield
    except BaseException as error:
        ARTIFACTS.mkdir(exist_ok=True)
        picture = ARTIFACTS / f"browser-{name}.png"
        with contextlib.suppress(Exception):
            page.screenshot(path=str(picture), full_page=True)
        raise AssertionError(f"{name}: {error} (screenshot: {picture})") from error


def plotly_points(scope) -> int:
    """How many data points plotly drew as SVG in ``scope`` (a page or a locator)."""
    return scope.locator(".js-plotly-plot .main-svg .scatterlayer path.point").count()


def loaded_images(scope, selector: str = ".widget-html img") -> list[str]:
    """The sources of the images in ``scope`` (a gallery's, by default) that the browser loaded and
    decoded (all must be)."""
    images = scope.locator(selector)
    states = images.evaluate_all("els => els.map(e => [e.complete && e.naturalWidth > 0, e.src.slice(0, 200)])")
    assert states and all(ok for ok, _ in states), f"{sum(not ok for ok, _ in states)} images did not load"
    return [source for _, source in states]


def save(page) -> None:
    """Save the notebook (Ctrl+S) and wait until JupyterLab no longer marks its tab as changed."""
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')", timeout=60_000)


def gallery_of(page):
    """The output that holds the trained run's prediction gallery (a slider and images)."""
    return page.locator(".jp-OutputArea-output").filter(has=page.locator(".widget-slider")).filter(
        has=page.locator("img")).first


def bare_python(root: Path, distributions: Iterable[str]) -> Path:
    """The Python of a new virtualenv under ``root`` that holds only ``distributions``, linked from this
    environment (nothing downloaded): an environment with just what a list of requirements brings."""
    venv.create(root, symlinks=True)
    site = next(root.glob("lib/python3*/site-packages"))
    for name in distributions:
        distribution = importlib.metadata.distribution(name)
        for top in {Path(file).parts[0] for file in distribution.files or []} - {".."}:
            source = Path(distribution.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    return root / "bin" / "python"
