"""Outputs that appear whole or not at all: atomic files and staged output folders.

Every file the engine writes goes through `atomic_write` (a temp file beside the target, then `os.replace`);
every output folder through `staged_outputs` (a staging folder beside it on the same file system, then
renames with roll-back). Files get the mode the process umask gives (as `open` would), not the 0600 of
`tempfile`. Nothing the tool did not create is ever deleted: a folder where a file output goes is refused.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator, Union

from ..core.errors import InputError

PathLike = Union[str, "os.PathLike[str]"]

#: Prefix of staging folders and temp files (hidden, named after the output they become).
_STAGE_MARK = "-partial-"


def process_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux), else set and restored."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _give_umask_mode(path: Path, directory: bool = False) -> None:
    """`tempfile` creates 0600 files and 0700 folders; give them the mode a plain `open`/`mkdir` would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~process_umask())


def _registered_temp(created: list[Path], prefix: str, suffix: str, directory: Path, folder: bool = False) -> Path:
    """Create a temp file (or folder) in `directory` and append it to `created`, with SIGINT/SIGTERM held.

    Between the creation and the registration an interruption would leave a temp file no clean-up knows of;
    held signals land after the registration, so the caller's clean-up removes it.
    """
    with _signals_held():
        if folder:
            made = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=str(directory)))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=str(directory))
            os.close(fd)
            made = Path(name)
        created.append(made)
    return made


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temp file next to `path` (same extension) and rename it into place.

    The temp file keeps the full extension (`.nii.gz`, `.seg.nrrd`) so writers that pick the format by
    name write the right thing; on any error or interruption it is removed and the old file, if any, is
    untouched. The new file has the mode the umask gives.

    Parameters
    ----------
    path : str or Path
        The file to create or replace.
    write : callable
        Writes the content to the path it is given.

    Returns
    -------
    Path
        `path`.

    Examples
    --------
    >>> atomic_write("notes.txt", lambda tmp: tmp.write_text("done"))  # doctest: +SKIP
    PosixPath('notes.txt')
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise InputError(f"{path} is a folder; a file is written there (move the folder or pick another name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:])
    created: list[Path] = []
    try:
        tmp = _registered_temp(created, f".{path.stem}{_STAGE_MARK}", suffix, path.parent)
        _give_umask_mode(tmp)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        for leftover in created:
            leftover.unlink(missing_ok=True)
        raise
    return path


def _write_synced(tmp: Path, data: bytes) -> None:
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (flushed to disk before the rename), with the umask's mode."""
    return atomic_write(path, lambda tmp: _write_synced(tmp, data))


def atomic_write_files(contents: dict[Path, bytes]) -> list[Path]:
    """Write several files that belong together (a model and its card): all temp files first, then the
    renames one after the other while SIGINT/SIGTERM are held, so an interruption leaves the old set or
    the new set, never a mix and never a temp file."""
    for path in contents:
        if Path(path).is_dir() and not Path(path).is_symlink():
            raise InputError(f"{path} is a folder; a file is written there (move the folder or pick another name)")
    created: list[Path] = []
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in contents.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _registered_temp(created, f".{path.name}{_STAGE_MARK}", ".tmp", path.parent)
            staged.append((tmp, path))
            _give_umask_mode(tmp)
            _write_synced(tmp, data)
        with _signals_held():
            for tmp, path in staged:
                os.replace(tmp, path)
    finally:
        for tmp in created:
            tmp.unlink(missing_ok=True)
    return [Path(p) for p in contents]


# ----------------------------------------------------------------------------------- output checks
def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_can_create_in(folder: Path, what: Path) -> None:
    """Try to create (and remove) a file in `folder`: permissions, read-only mounts and quotas all show."""
    if not folder.is_dir():
        raise InputError(f"{what}: cannot be created, {folder} is not a folder")
    with _signals_held():  # an interruption lands after the probe file is gone
        try:
            fd, probe = tempfile.mkstemp(prefix=f".cuts-write-test{_STAGE_MARK}", dir=str(folder))
        except OSError as exc:
            raise InputError(f"{what}: cannot write in {folder} ({exc.strerror or exc})") from None
        os.close(fd)
        os.unlink(probe)


def check_output_file(path: PathLike, suffixes: tuple[str, ...], option: str = "--out") -> Path:
    """Refuse, before any work, an output file that could not be written: wrong suffix, a folder, no access.

    Parameters
    ----------
    path : str or Path
        The file the job will write.
    suffixes : tuple of str
        Accepted endings, lower case (``(".nrrd", ".nii.gz")``).
    option : str
        How the user gave the path, for the message.

    Returns
    -------
    Path
        `path`.

    Raises
    ------
    InputError
        In one line, naming the path.
    """
    path = Path(path)
    if not path.name.lower().endswith(tuple(suffixes)):
        raise InputError(f"{option} must end in {' or '.join(suffixes)}, got '{path.name}'")
    if path.is_dir() and not path.is_symlink():
        raise InputError(f"{option} {path} is a folder; a file is written there (move it or pick another name)")
    _check_can_create_in(_nearest_existing(path.parent), path)
    return path


def check_output_folder(out: PathLike, file_names: tuple[str, ...] = (), option: str = "--out") -> Path:
    """Refuse, before any work, an output folder that could not take the outputs named `file_names`.

    `out` must be a folder or not exist yet, in a place where it can be created; none of `file_names` may
    be a folder inside it (it would have to be deleted, and the tool never deletes what it did not make).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {out} is a file; an output folder is needed there")
    for name in file_names:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            raise InputError(f"{target} is a folder; an output file of that name is written there (move it away)")
    _check_can_create_in(out if out.is_dir() else _nearest_existing(out.parent), out)
    return out


# ------------------------------------------------------------------------------------ staged folders
@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while outputs are swapped in: an interruption lands before or after, not during.

    Python runs signal handlers in the main thread whichever thread the system delivered the signal to (torch
    keeps worker threads), so an OS signal mask on the main thread does not hold them. Instead the handlers are
    swapped for one that only records the signal; once the previous handlers are back, a recorded signal is
    raised again and lands after the block. Outside the main thread (where handlers cannot be set) the block
    runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous: dict[int, object] = {}

    def record(signum: int, frame: object) -> None:
        caught.append(signum)

    try:
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, record)
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)  # type: ignore[arg-type]
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)


def _replaceable(target: Path, new: Path) -> bool:
    """An existing `target` may be swapped for `new`: a file (or link) for a file, or a folder the new folder
    would overwrite entirely (every entry a file that `new` also holds: a previous run's output)."""
    if target.is_symlink() or not target.exists():
        return True
    if target.is_dir() != new.is_dir():
        return False
    if not target.is_dir():
        return True
    return all(
        entry.is_file() and not entry.is_symlink() and (new / entry.name).is_file() for entry in target.iterdir()
    )


def _swap_in(stage: Path, out: Path) -> None:
    """Move every entry of `stage` into the existing folder `out`, all or nothing.

    Entries of `out` that are replaced are first moved aside into the staging folder; if any rename fails,
    the moves done so far are undone, so `out` holds either all the new outputs or all the old ones.
    """
    items = sorted(p for p in stage.iterdir() if p.name != ".previous")
    for item in items:
        target = out / item.name
        if not _replaceable(target, item):
            raise InputError(f"{target} is a folder of the user's; an output of that name is written there (move it)")
    previous = stage / ".previous"
    previous.mkdir()
    moved_aside: list[Path] = []
    moved_in: list[Path] = []
    try:
        for item in items:
            target = out / item.name
            if target.exists() or target.is_symlink():
                os.rename(target, previous / item.name)
                moved_aside.append(target)
            os.rename(item, target)
            moved_in.append(target)
    except BaseException:
        for target in reversed(moved_in):
            os.rename(target, stage / target.name)
        for target in reversed(moved_aside):
            os.rename(previous / target.name, target)
        raise


@contextlib.contextmanager
def staged_outputs(out: PathLike) -> Iterator[Path]:
    """Yield a staging folder beside `out`; on success its entries appear in `out` at once, else nothing does.

    The staging folder is on the same file system as `out`, so the final step is renames only: a new `out`
    is the staging folder renamed; into an existing `out` the entries are swapped with roll-back while
    SIGINT/SIGTERM are held. Other files in `out` are left alone; a user's folder where an output goes is
    refused with `InputError`, never deleted. On failure or interruption the staging folder is removed.

    Parameters
    ----------
    out : str or Path
        The output folder.

    Yields
    ------
    Path
        The staging folder to write the outputs into.

    Examples
    --------
    >>> with staged_outputs("result") as stage:  # doctest: +SKIP
    ...     (stage / "summary.json").write_text("{}")
    """
    out = Path(out)
    check_output_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    try:
        stage = _registered_temp(created, f".{out.name}{_STAGE_MARK}", "", out.parent, folder=True)
        _give_umask_mode(stage, directory=True)
        yield stage
        with _signals_held():
            if out.is_dir():
                _swap_in(stage, out)
            else:
                try:
                    os.rename(stage, out)
                except OSError:
                    if not out.is_dir():
                        raise
                    _swap_in(stage, out)  # created meanwhile by someone else: merge instead
    finally:
        for made in created:
            shutil.rmtree(made, ignore_errors=True)
