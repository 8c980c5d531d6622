"""The data cache: built-in scene sets and pretrained backbones, made once and reused.

One folder holds them, ``$SEGKIT_DATA`` or else ``~/.cache/segkit``. On a hub, ``SEGKIT_DATA`` is one
folder for a room of learners who are separate Unix accounts, so the cache follows three rules:

- **What is written is readable by whoever can read the cache.** An entry is made in a private
  temporary folder, then given the read bits of the cache folder (group and others; never their
  write bits) and renamed into place, so a reader never sees half an entry and the next learner is
  never refused (``mkdtemp``'s ``drwx------`` used to reach the cache as it was).
- **A learner who cannot write the cache keeps working**: what they need that is not there goes to
  their own cache, ``~/.cache/segkit``, with one line saying so; an entry they cannot read is made
  again there.
- **What the instructor prefilled cannot be changed under a learner.** ``segkit data prefill --shared``
  (``prefill``) records the SHA-256 of every entry in ``MANIFEST`` at the cache's top and leaves the
  cache read-only to others; an entry listed there is checked before it is used, and one that no
  longer matches is refused with one line.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from segkit.errors import DataError

#: The file at the top of a prefilled cache: the SHA-256 of each entry, written by ``prefill``.
MANIFEST = "segkit-manifest.json"
#: Read bits of a folder for its group and for others: what an entry gives its readers.
_READ = stat.S_IRGRP | stat.S_IROTH
_SEARCH = stat.S_IXGRP | stat.S_IXOTH


def private_folder() -> Path:
    """This account's own cache, ``~/.cache/segkit``."""
    return Path.home() / ".cache" / "segkit"


def cache_folder() -> Path:
    """The cache: ``$SEGKIT_DATA`` (shared on a hub) or this account's own."""
    return Path(os.environ.get("SEGKIT_DATA", private_folder())).expanduser()


def readable(path: Path) -> bool:
    """Whether this account can read ``path`` (for a folder: list it and its files)."""
    if path.is_dir():
        return os.access(path, os.R_OK | os.X_OK) and all(
            os.access(inner, os.R_OK | (os.X_OK if inner.is_dir() else 0)) for inner in path.rglob("*"))
    return os.access(path, os.R_OK)


def writable(folder: Path) -> bool:
    """Whether this account can add entries to ``folder`` (made if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def find(name: str) -> Path | None:
    """The entry ``name`` (a relative path) as this account can use it, or None if it must be made.

    The shared cache first, checked against its manifest when it has one; then this account's own.
    Raises ``DataError`` when a prefilled entry was changed after the prefill.
    """
    shared = cache_folder() / name
    if shared.exists():
        if readable(shared):
            check_against_manifest(cache_folder(), name)
            return shared
        say(f"{shared} is not readable by {getpass.getuser()} (mode {stat.filemode(shared.stat().st_mode)}); "
            f"using your own copy in {private_folder()} (to share it, its owner can run: chmod -R a+rX {shared})")
    elif writable(cache_folder()):
        return None  # made where everyone who reads the cache finds it, even if this account has its own copy
    own = private_folder() / name
    return own if own.exists() and own != shared else None


def make(name: str, write: Callable[[Path], None]) -> Path:
    """Make the entry ``name`` by ``write(staging_path)`` and move it into place, readable by the cache's readers.

    ``write`` fills ``staging_path`` (a file or a folder of that name in a private temporary folder; files it
    writes beside it, such as a provenance ``.json``, move with it and land first). The
    entry goes to the shared cache if this account can write it, else to its own cache with one line.
    Two processes making the same entry at once are safe: the first rename wins, the other copy is dropped.
    """
    folder = cache_folder()
    if not writable(folder):
        say(f"{folder} is read-only for {getpass.getuser()}: {name} goes to your own cache, {private_folder()}")
        folder = private_folder()
    elif (folder / name).exists():  # there but unreadable for this account (``find`` said so)
        folder = private_folder()
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(staging / target.name)
        made = sorted(staging.iterdir(), key=lambda path: path.name == target.name)  # the entry itself last
        for path in made:
            share_like(path, folder)
            try:
                path.rename(target.parent / path.name)
            except OSError:  # another process finished first; its copy is identical
                if not (target.parent / path.name).exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def share_like(path: Path, folder: Path, *, owner_write: bool = True) -> None:
    """Give ``path`` (a file or a whole tree) the read bits ``folder`` has for its group and others.

    Group and others never get write bits; the owner keeps write unless ``owner_write`` is False. A
    folder keeps its setgid bit, so the group of a setgid cache stays on everything in it.
    """
    folder_mode = folder.stat().st_mode
    reading = folder_mode & _READ
    searching = folder_mode & _SEARCH
    owner = stat.S_IRUSR | (stat.S_IWUSR if owner_write else 0)
    for inner in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if inner.is_dir():
            keep = inner.stat().st_mode & stat.S_ISGID
            inner.chmod(owner | stat.S_IXUSR | reading | searching | keep)
        else:
            inner.chmod(owner | reading)


def tree_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's relative file names and bytes in sorted order."""
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(path.read_bytes())
        return digest.hexdigest()
    for inner in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(inner.relative_to(path).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(inner.read_bytes()).digest())
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, dict]:
    """The prefilled entries of a cache (name -> record), empty when it has no manifest."""
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(f"{path} is not a readable segkit manifest; ask the instructor to run "
                        f"`segkit data prefill --shared` again") from None


def check_against_manifest(folder: Path, name: str) -> None:
    """Raise ``DataError`` if ``name`` is listed in ``folder``'s manifest and no longer matches it."""
    record = read_manifest(folder).get(name)
    if record is None:
        return
    path = folder / name
    if tree_sha256(path) != record["sha256"]:
        raise DataError(f"{path} was changed after the instructor prefilled {folder} (its SHA-256 differs from "
                        f"{folder / MANIFEST}); refusing it: ask the instructor to run `segkit data prefill --shared` "
                        f"again, or set SEGKIT_DATA={private_folder()} to use your own cache")


def prefill(names: list[str], *, shared: bool, log=print) -> Path:
    """Record ``names`` (entries already made in the cache) in its manifest; with ``shared``, make the
    cache read-only to everyone but its owner: folders 0755 (setgid kept), files 0444 (their SHA-256 in
    the manifest). Entries listed before keep their records and are checked again.

    Returns:
        The manifest's path.
    """
    folder = cache_folder()
    records = read_manifest(folder)
    for name in names:
        path = folder / name
        if not path.exists():
            raise DataError(f"{path} is not in the cache {folder}; make it there first (segkit data prefill does)")
        if name in records:
            check_against_manifest(folder, name)
        records[name] = {"sha256": tree_sha256(path), "files": sum(1 for p in [path, *path.rglob("*")] if p.is_file())}
        if shared:
            share_like(path, folder, owner_write=False)
    manifest = {"made_by": getpass.getuser(), "made": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "entries": records}
    staging = folder / f".{MANIFEST}.{os.getpid()}"
    staging.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(staging, folder / MANIFEST)
    if shared:
        keep = folder.stat().st_mode & stat.S_ISGID
        folder.chmod(0o755 | keep)
        for inner in {folder / Path(name).parent for name in names} - {folder}:
            inner.chmod(0o755 | (inner.stat().st_mode & stat.S_ISGID))
        (folder / MANIFEST).chmod(0o444)
    log(f"prefilled {folder}: {len(records)} entries, hashes in {folder / MANIFEST}"
        + ("; read-only to others (folders 0755, files 0444)" if shared else ""))
    return folder / MANIFEST


def say(line: str) -> None:
    """One line to the learner, on stderr (a notebook shows it under the cell)."""
    print(f"segkit: {line}", file=sys.stderr, flush=True)
