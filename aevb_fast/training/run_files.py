"""A training run's directory (aevb-fast train --out): one writer at a time, no run replaced by
mistake, and files that a crash, a full disk or a flipped bit cannot turn into a wrong result.

    with RunDirectory(out, resume=False, overwrite=False) as run:   # made, locked, checked
        run.save_checkpoint(state)              # checkpoint.pt; the one before kept as checkpoint.prev.pt
        run.write_text("metrics.csv", text)
    state = load_checkpoint(out, use)           # the newest checkpoint that verifies and that use() accepts

- Lock: OUT/lock, held with flock(2) for the run's life and naming its holder (pid, host, start).
  A second run into the directory fails at once, naming the holder. The kernel drops a flock when
  its process dies, kill -9 included, so a lock file that nobody holds is stale: the next run takes
  it over with a note.
- Before training: the directory is made and written (the lock's content), so that a read-only or
  full --out fails at once, not after the first --eval-every samples; a directory that holds a run
  is refused unless the run is resumed (--resume) or replaced (--overwrite).
- Writes go to a temporary file, flushed to disk, renamed over the old file, so a reader sees the
  old file or the new one, never half of one; a failed write (a full disk) raises OSError and
  leaves the old file as it was.
- Checkpoints carry a SHA-256 checksum of their contents (`checksum`, over every tensor's bytes and
  every value) and a format number; one that does not load with weights_only, lacks keys or fails
  its checksum is skipped for checkpoint.prev.pt, with a warning.
"""

import errno
import fcntl
import hashlib
import io
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

CHECKPOINT, PREVIOUS, LOCK = "checkpoint.pt", "checkpoint.prev.pt", "lock"
# What a run writes into its directory (besides the lock and temporary files): --overwrite removes these.
RUN_FILES = (
    CHECKPOINT,
    PREVIOUS,
    "metrics.csv",
    "metrics.json",
    "bound.png",
    "samples.png",
    "manifold.png",
    "evaluation.json",
)
FORMAT = 2  # 2: with format and checksum; format 1 (aevb-fast 0.1.0 before) had neither
# data and rng hold one entry per rank: its place in its minibatch stream and its generator state.
CHECKPOINT_KEYS = {
    "format",
    "checksum",
    "model",
    "optimizer",
    "data",
    "rng",
    "samples",
    "wall_s",
    "metrics",
    "config",
    "data_fingerprint",
}


class OtherRun(ValueError):
    """A sound checkpoint of another run (other settings or data): an older checkpoint of the same
    directory would not fit either, so there is no falling back."""


class RunFailed(RuntimeError):
    """A run that stopped on its own: it diverged, or its directory could not be written; the
    message says what is kept."""


def digest(value) -> str:
    """SHA-256 of a checkpoint's contents: tensors by dtype, shape and bytes, containers in order
    (dicts by key), everything else by repr."""
    hasher = hashlib.sha256()
    _feed(hasher, value)
    return hasher.hexdigest()


def _feed(hasher, value) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().reshape(-1).contiguous()
        hasher.update(f"tensor {flat.dtype} {list(value.shape)};".encode())
        hasher.update(flat.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        hasher.update(f"dict {len(value)};".encode())
        for key in sorted(value, key=repr):
            hasher.update(f"{key!r}:".encode())
            _feed(hasher, value[key])
    elif isinstance(value, (list, tuple)):
        hasher.update(f"{type(value).__name__} {len(value)};".encode())
        for item in value:
            _feed(hasher, item)
    else:
        hasher.update(f"{type(value).__name__} {value!r};".encode())


def write_atomically(path: Path, data: bytes) -> None:
    """path's new contents, through a temporary file flushed to disk and renamed over it; on any
    error path is as it was."""
    os.replace(_written_beside(path, data), path)
    _sync_directory(path.parent)


def _written_beside(path: Path, data: bytes) -> Path:
    """data in a temporary file beside path (named by this process, so that two writers never share
    one), flushed to disk; the file removed again if that fails."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _sync_directory(directory: Path) -> None:
    """The renames in directory reach the disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's state, loaded with weights_only (tensors and plain containers: no code runs
    from the file) and verified against its checksum, or ValueError saying what is wrong with it."""
    if not path.is_file():
        raise ValueError(f"{path} is missing" if not path.exists() else f"{path} is not a regular file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # a GPU run's, on any machine
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... by damage
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else "the file ends early"
        raise ValueError(f"{path} cannot be read as a checkpoint ({type(error).__name__}: {reason})") from None
    if (
        isinstance(state, dict)
        and "format" not in state
        and CHECKPOINT_KEYS - {"format", "checksum", "data_fingerprint"} <= set(state)
    ):
        raise ValueError(
            f"{path} was written by an earlier aevb-fast (checkpoint format 1, without a checksum or a "
            f"fingerprint of its data), which this version does not read: train the run anew"
        )
    missing = CHECKPOINT_KEYS - set(state) if isinstance(state, dict) else CHECKPOINT_KEYS
    if missing:
        raise ValueError(f"{path} is not a checkpoint of aevb-fast train: it lacks {', '.join(sorted(missing))}")
    if not (type(state["format"]) is int and state["format"] == FORMAT):
        raise ValueError(f"{path} has checkpoint format {state['format']!r}; this aevb-fast reads format {FORMAT}")
    unknown = set(state) - CHECKPOINT_KEYS
    if unknown:
        raise ValueError(f"{path} holds keys a checkpoint of aevb-fast train does not: {', '.join(sorted(unknown))}")
    expected = state.pop("checksum")
    if digest(state) != expected:
        raise ValueError(f"{path} is damaged: its contents do not match its checksum")
    return state


def load_checkpoint(out: str | Path, use: Callable[[dict], object] = lambda state: state, warn: bool = True):
    """use(state) of the newest checkpoint of a run that reads, verifies and that `use` accepts
    (raising ValueError otherwise): checkpoint.pt, or else checkpoint.prev.pt with a warning on
    stderr. ValueError naming both if neither serves; OtherRun from `use` is raised as it is."""
    out = Path(out)
    newest, previous = out / CHECKPOINT, out / PREVIOUS
    if not newest.exists() and not previous.exists():
        raise ValueError(f"{newest} is missing: give a directory that aevb-fast train wrote")
    try:
        return _use(newest, use)
    except OtherRun:
        raise
    except ValueError as error:
        failed = error
    try:
        result = _use(previous, use)
    except OtherRun:
        raise
    except ValueError as error:
        raise ValueError(f"no usable checkpoint in {out}: {failed}; {error}") from None
    if warn:
        print(f"aevb-fast: {failed}; using {previous}", file=sys.stderr)
    return result


def _use(path: Path, use: Callable[[dict], object]):
    state = read_checkpoint(path)
    try:
        return use(state)
    except OtherRun:
        raise
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def serialize(state: dict) -> bytes:
    """state with its format and checksum, as torch.save writes it."""
    state = {**state, "format": FORMAT}
    buffer = io.BytesIO()
    torch.save({**state, "checksum": digest(state)}, buffer)
    return buffer.getvalue()


class RunDirectory:
    """The directory of one run, locked while the `with` block runs (see the module's docstring)."""

    def __init__(self, out: str | Path, *, resume: bool = False, overwrite: bool = False):
        if resume and overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite replaces it: give one of them")
        self.path, self.resume, self.overwrite = Path(out), resume, overwrite
        self._lock_fd = None

    def __enter__(self) -> "RunDirectory":
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"--out {self.path} cannot be made a directory ({_reason(error)})") from None
        self._lock()
        try:
            self._claim()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._unlock()

    def _lock(self) -> None:
        path = self.path / LOCK
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise ValueError(f"--out {self.path} cannot be written ({_reason(error)})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = _read_holder(fd)
                os.close(fd)
                if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    raise ValueError(
                        f"{self.path} is in use by another training run ({holder or 'holder unknown'}): "
                        "wait for it to end, or train into another --out"
                    ) from None
                raise ValueError(
                    f"{path} cannot be locked ({_reason(error)}): the file system of --out does not "
                    "support locks; train into a directory on another one"
                ) from None
            # The holder removes the lock file before it lets go: if we locked a removed file, start again.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._lock_fd = fd
        stale = _read_holder(fd)
        holder = f"pid {os.getpid()} on host {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        try:
            if stale:
                os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"holder": holder}).encode(), 0)
            os.fsync(fd)
        except OSError as error:
            self._unlock()
            raise ValueError(f"--out {self.path} cannot be written ({_reason(error)})") from None
        if stale:
            print(
                f"aevb-fast: took over the lock of {self.path}, whose holder ({stale}) ended without releasing it",
                file=sys.stderr,
            )

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            (self.path / LOCK).unlink(missing_ok=True)  # before letting go: see _lock
            os.close(self._lock_fd)
            self._lock_fd = None

    def _claim(self) -> None:
        """Refuses a directory that holds another run, unless it is resumed; with overwrite, removes it."""
        found = [name for name in RUN_FILES if (self.path / name).exists()]
        if not found or self.resume:
            return
        if self.overwrite:
            for name in found:
                try:
                    (self.path / name).unlink()
                except OSError as error:
                    raise ValueError(f"--overwrite: {self.path / name} cannot be removed ({_reason(error)})") from None
            return
        try:
            at = f" at {load_checkpoint(self.path, warn=False)['samples']:,} samples"
        except (ValueError, TypeError):  # no checkpoint that reads, or one whose count is not one
            at = ""
        raise ValueError(
            f"{self.path} already holds a run{at} ({', '.join(found)}): continue it with --resume, "
            "train into another --out, or replace it with --overwrite"
        )

    def save_checkpoint(self, state: dict) -> None:
        """checkpoint.pt, written atomically; the one before, if it verifies, kept as
        checkpoint.prev.pt (a damaged one never displaces a good previous one). OSError if the
        directory cannot be written: the checkpoints on disk are then as they were."""
        path = self.path / CHECKPOINT
        temporary = _written_beside(path, serialize(state))
        if path.exists():
            try:
                read_checkpoint(path)
                os.replace(path, self.path / PREVIOUS)
            except ValueError:
                pass
        os.replace(temporary, path)
        _sync_directory(self.path)

    def write_text(self, name: str, text: str) -> None:
        write_atomically(self.path / name, text.encode())


def _read_holder(fd: int) -> str:
    """The holder a lock file names ('' for an empty or foreign one)."""
    try:
        return str(json.loads(os.pread(fd, 4096, 0).decode()).get("holder", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
