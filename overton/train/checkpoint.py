"""Training checkpoints that survive a kill at any moment, and a disk check before the first one.

Layout of a checkpoint folder (``root``)::

    step-000100/                    a committed checkpoint: whatever the caller wrote, plus
        model.pt, optimizer.pt ...
        COMMITTED.json              the marker, written last: step, caller's meta, every file with its
                                    size and BLAKE3 digest, and the digest of the marker's own content
    step-000200/
    .tmp-step-000300-1a2b3c4d/      a save in progress (or killed): never read, removed by clean_stale()

How a save stays safe (the rule of ``overton.corpus.atomic``, applied to a whole folder):

1. the caller's ``write(tmp)`` fills a hidden temporary folder ``.tmp-step-NNNNNN-<random>``;
2. every file and folder in it is fsynced, then ``COMMITTED.json`` is written and fsynced last;
3. the folder is renamed to ``step-NNNNNN`` and ``root`` is fsynced: that rename is the commit;
4. only then are the older committed checkpoints beyond the newest ``keep`` removed (each is first
   renamed to a hidden ``.tmp-delete-...`` name, so a kill during the removal leaves no half-deleted
   folder that looks like a checkpoint).

A kill before step 3 leaves only a hidden temporary folder; a kill after it leaves a complete checkpoint.
``committed()`` and ``latest()`` return only folders whose marker is valid and whose listed files all exist
with the listed sizes, so a folder damaged after the fact (a truncated file) is skipped and the previous one
is used. Listing costs one ``stat`` per file and reads nothing.

Checksums: the marker records the BLAKE3 digest of every file, and of its own content. Sizes catch what a
kill, a full disk or a preemption leave (missing or short files); a flipped byte of ``model.pt`` keeps its
size, and only a checksum keeps it from being loaded into a run that then goes on with wrong weights.
``newest_sound()`` reads the checkpoints back, newest first, once per resume, and returns the first whose
files all match; the damaged ones it skips are never counted among the ``keep`` by rotation (which removes
them), so a damaged newest checkpoint never pushes out the sound one the run resumed from.
Why BLAKE3 (``blake3`` package, multithreaded), measured on this project's 2-core AMD EPYC test machine
(AVX-512 and SHA-NI; other jobs running, so the best of the runs): on a 1 GiB buffer, sha256 hashes
1.5-1.7 GB/s, blake2b 0.7-0.8 GB/s, BLAKE3 3.5-4.0 GB/s on one core and 5.4 GB/s on two threads; on
1.6 GB of checkpoint files in the page cache, ``verify()`` (BLAKE3 over a memory map, every core) reads and
hashes at 3.5 GB/s (median) against 1.2 GB/s for sha256. For a 72.6 GB GPT-J 6B checkpoint that is 21 s
of verification instead of 62 s, or 40 s instead of 116 s read cold from this machine's disk; a GPU
host's many cores hash faster still, and the disk is then what limits a cold read.
Files written through ``open()`` are hashed on their way to the disk: ``torch.save`` writes a file object
strictly sequentially (only ``write`` calls, no ``seek``; checked with torch 2.13), so the commit does not
read them back. On 1.07 GB of tensors, ``torch.save`` takes 1.3 s; hashing while writing adds 0.15-0.3 s
(two threads bring nothing there on two busy cores), hashing by reading the file back 0.5 s. Other files
(small ones, other ranks' files) are read back and hashed at the commit.
Markers of the earlier format (``overton-checkpoint/1``: sizes, and sha256 only where asked for) are still
read; ``newest_sound()`` checks what they record and says so.

Disk preflight: ``checkpoint_bytes()`` (formula) or ``estimate_checkpoint_bytes(model)`` (measured) gives
the size of one checkpoint; ``preflight()`` refuses to start, with one line, when the disk cannot hold the
``keep`` checkpoints plus the one being written plus the final export.

One trainer per ``root`` at a time. For multi-process saves, rank 0 calls ``begin()`` and shares the
temporary path, every rank writes into it and hashes what it wrote (``file_digest``: the files are in its
page cache, and the hashing is split between the ranks and their machines instead of rank 0 reading
the whole checkpoint back), and rank 0 calls ``commit()`` with every rank's digests once all have written.
This module needs no torch, except ``estimate_checkpoint_bytes`` and ``module_bytes`` which measure one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from overton.corpus.atomic import TMP_MARK, fsync_dir, fsync_tree, read_json, sha256_file, write_json
from overton.corpus.errors import UserError

MARKER = "COMMITTED.json"
FORMAT = "overton-checkpoint/2"
EARLIER_FORMAT = "overton-checkpoint/1"  # sizes only, or with "sha256" where checksums were asked for
HASH = "blake3"
MIN_KEEP = 2
_STEP_DIR = re.compile(r"^step-(\d+)$")

# Bytes a checkpoint adds per tensor, or per shard of a sharded tensor, beyond its data: torch.distributed.checkpoint
# saves each with torch.save into its rank's file (zip records, pickle, alignment) and indexes it in .metadata.
# Measured with torch 2.13 on a tiny GPT-J (100 tensors: 25 of the model, 3 per parameter for AdamW): 2,033 bytes
# per tensor on one process, 1,958 per piece over two FSDP ranks (175 pieces: the AdamW step counters are not
# sharded); rounded up. (torch.save of whole state dicts, earlier versions' format, added 270-370.)
TENSOR_OVERHEAD_BYTES = 2048
# Scheduler, RNG (CPU generator state is 5 KB, each CUDA device 16 bytes) and loader state: a few KB in
# practice; a generous allowance.
EXTRA_STATE_BYTES = 1 << 16


def disk_free(path: Path) -> int:
    """Bytes an unprivileged writer can still use on the filesystem of ``path``."""
    return shutil.disk_usage(path).free


def human_bytes(n: int) -> str:
    """Decimal units, one decimal: ``72.6 GB``, ``4.2 MB``, ``512 B``."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def step_name(step: int) -> str:
    return f"step-{step:06d}"


# ------------------------------------------------------------------------------------------ checksums


def _hasher():
    """A BLAKE3 hasher that uses every core on large inputs (imported here: the dry run needs no blake3)."""
    import blake3

    return blake3.blake3(max_threads=blake3.blake3.AUTO)


def file_digest(path: Path) -> str:
    """BLAKE3 of a file, hashed over a memory map by every core (blake3's fastest way for a file)."""
    hasher = _hasher()
    hasher.update_mmap(path)
    return hasher.hexdigest()


def _marker_digest(marker: dict) -> str:
    """BLAKE3 of the marker's content without its own digest (a flipped digit in ``meta`` would move a resume)."""
    content = {key: value for key, value in marker.items() if key != HASH}
    hasher = _hasher()
    hasher.update(json.dumps(content, ensure_ascii=False, sort_keys=True).encode())
    return hasher.hexdigest()


_DIGESTS = {HASH: file_digest, "sha256": sha256_file}  # sha256: earlier markers written with checksums=True


class _HashingFile:
    """The write side of a file that hashes the bytes on their way to it; no ``seek``: writes stay sequential."""

    def __init__(self, handle, hasher):
        self._handle, self._hasher = handle, hasher

    def write(self, data) -> int:
        self._hasher.update(data)
        return self._handle.write(data)

    def flush(self) -> None:
        self._handle.flush()


# --------------------------------------------------------------------------------------------- sizes


def checkpoint_bytes(n_params: int, param_bytes: int = 4, optimizer_state_bytes_per_param: int = 8,
                     master_weight_bytes: int = 0, n_tensors: int = 0,
                     extra_bytes: int = EXTRA_STATE_BYTES) -> int:
    """Size of one checkpoint (model + AdamW state + small state), by formula::

        n_params * (param_bytes + optimizer_state_bytes_per_param + master_weight_bytes)
          + n_tensors * TENSOR_OVERHEAD_BYTES + extra_bytes

    ``param_bytes``: 4 for fp32 parameters (mixed precision with autocast), 2 for bf16 ones.
    ``optimizer_state_bytes_per_param``: AdamW keeps two moments per parameter; PyTorch creates them with
    the parameter's dtype, so 8 for fp32 parameters (the default) and 4 for bf16 ones, 8 again for an
    optimizer that keeps fp32 moments of bf16 weights. ``master_weight_bytes``: 4 when such an optimizer
    also keeps an fp32 copy of bf16 weights. ``n_tensors``: tensors saved (model state-dict entries plus 3
    per trained parameter tensor for AdamW: two moments and ``step``); negligible for large models.
    Example: GPT-J 6B (6,053,381,344 parameters, fp32 + AdamW) is about 72.6 GB.
    """
    if n_params < 0 or n_tensors < 0:
        raise ValueError("n_params and n_tensors must be >= 0")
    per_param = param_bytes + optimizer_state_bytes_per_param + master_weight_bytes
    return n_params * per_param + n_tensors * TENSOR_OVERHEAD_BYTES + extra_bytes


def module_bytes(model: Any) -> int:
    """Bytes of ``model.state_dict()`` as torch.save or save_pretrained writes them (shared storages once)."""
    storages: dict[int, int] = {}
    for tensor in model.state_dict().values():
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def estimate_checkpoint_bytes(model: Any, optimizer_state_bytes_per_param: int | None = None,
                              master_weight_bytes: int = 0, extra_bytes: int = EXTRA_STATE_BYTES,
                              shards: int = 1) -> int:
    """Size of one checkpoint of ``model`` (a ``torch.nn.Module``) trained with AdamW, measured from it.

    The model part is its state dict; the optimizer part is two moments per trained parameter, of the
    parameter's dtype unless ``optimizer_state_bytes_per_param`` says otherwise (see ``checkpoint_bytes``).
    ``shards``: the pieces each tensor is saved in (the processes of a sharded run), each with its overhead.
    """
    state = model.state_dict()
    trained = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    if optimizer_state_bytes_per_param is None:
        optimizer = sum(2 * p.numel() * p.element_size() for p in trained)
    else:
        optimizer = sum(p.numel() for p in trained) * optimizer_state_bytes_per_param
    masters = sum(p.numel() for p in trained) * master_weight_bytes
    n_tensors = len(state) + 3 * len(trained)
    return module_bytes(model) + optimizer + masters + n_tensors * shards * TENSOR_OVERHEAD_BYTES + extra_bytes


# ---------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A committed checkpoint: its folder, step, the caller's meta and its size on disk."""

    path: Path
    step: int
    meta: dict
    bytes: int
    files: list[dict] = field(repr=False)
    marker: dict = field(repr=False)

    @property
    def checksummed(self) -> bool:
        """Whether its marker records checksums (markers of the earlier format may record sizes only)."""
        return any(name in entry for entry in self.files for name in _DIGESTS)


@dataclass(frozen=True)
class Preflight:
    """The disk check's result; ``summary()`` is the line to print at start."""

    root: Path
    keep: int
    checkpoint_bytes: int
    export_bytes: int
    free: int
    committed: int  # checkpoints already on disk: their space is reused by rotation
    needed: int  # free bytes this run still needs

    @property
    def fits(self) -> int:
        """How many more checkpoints of this size the free space holds."""
        return self.free // self.checkpoint_bytes

    def summary(self) -> str:
        return (f"checkpoints: {human_bytes(self.checkpoint_bytes)} each, keeping {self.keep}; "
                f"{human_bytes(self.free)} free in {self.root}: room for {self.fits} more "
                f"(this run needs {human_bytes(self.needed)})")


class CheckpointManager:
    """Atomic, rotated training checkpoints under ``root`` (see the module docstring)."""

    def __init__(self, root: Path, keep: int = 2, free_bytes: Callable[[Path], int] = disk_free):
        if keep < MIN_KEEP:
            raise UserError(f"checkpoints to keep must be at least {MIN_KEEP}, not {keep}: the newest one "
                            "may be unusable (a diverged run) and the one before is the way back")
        self.root = Path(root)
        self.keep = keep
        self.free_bytes = free_bytes
        self._written: dict[Path, tuple[int, str]] = {}  # file -> (size, digest) hashed by open()
        self.damaged: set[Path] = set()  # committed checkpoints newest_sound() found damaged
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create the checkpoint folder {self.root}: {error.strerror}") from None

    # ------------------------------------------------------------------------------------ saving

    def save(self, step: int, write: Callable[[Path], None], meta: dict) -> Path:
        """Write a checkpoint with ``write(folder)`` and commit it as ``step-NNNNNN``; returns its path.

        If ``write`` or the commit fails, the temporary folder is removed, the committed checkpoints are
        untouched and the error goes on. Old checkpoints are rotated out only after the commit.
        """
        tmp = self.begin(step)
        try:
            write(tmp)
        except BaseException:
            self.abort(tmp)
            raise
        return self.commit(tmp, step, meta)

    def begin(self, step: int) -> Path:
        """Create and return the temporary folder a checkpoint of ``step`` is written into."""
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an integer >= 0, not {step!r}")
        tmp = self.root / f"{TMP_MARK}{step_name(step)}-{secrets.token_hex(4)}"
        tmp.mkdir()
        self._written = {}
        return tmp

    @contextlib.contextmanager
    def open(self, path: Path) -> Iterator[_HashingFile]:
        """Create ``path`` (in the folder ``begin()`` returned) for ``torch.save``: hashed as it is written.

        The commit then records the digest without reading the file back. Only ``write`` is offered, so
        the writes are sequential and the digest is that of the file.
        """
        path, hasher = Path(path), _hasher()
        with path.open("wb") as handle:
            yield _HashingFile(handle, hasher)
            size = handle.tell()
        self._written[path] = (size, hasher.hexdigest())

    def abort(self, tmp: Path) -> None:
        """Remove a temporary folder whose save failed."""
        shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, tmp: Path, step: int, meta: dict, digests: dict[Path, tuple[int, str]] | None = None) -> Path:
        """fsync everything in ``tmp``, write the marker last, rename to ``step-NNNNNN``, then rotate.

        ``digests``: files other processes wrote and hashed themselves (path -> size, BLAKE3 hex digest);
        kept when the size still matches, like those ``open()`` hashed. Any other file is read back here.
        """
        final = self.root / step_name(step)
        replaced = None
        self._written.update({Path(path): value for path, value in (digests or {}).items()})
        try:
            files = self._sync_and_list(tmp)
            marker = {
                "format": FORMAT,
                "step": step,
                "meta": meta,
                "files": files,
                "bytes": sum(f["bytes"] for f in files),
                "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            write_json(tmp / MARKER, {**marker, HASH: _marker_digest(marker)})
            if final.exists():  # the same step saved again (e.g. SIGTERM right after a periodic save)
                replaced = self._hide(final, "delete-")
            os.rename(tmp, final)
            fsync_dir(self.root)
        except BaseException:
            if replaced is not None and not final.exists():
                os.rename(replaced, final)  # put the earlier save of this step back
                replaced = None
            self.abort(tmp)
            raise
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
        self.damaged.discard(final)  # a damaged checkpoint of this step was just replaced
        self.rotate(protect=final)
        return final

    def _sync_and_list(self, tmp: Path) -> list[dict]:
        """fsync every file and folder under ``tmp`` (deepest first); the files with their sizes and digests.

        A file ``open()`` hashed keeps that digest if its size is still the one written; any other is read.
        """
        files = []
        for path in fsync_tree(tmp):
            size = path.stat().st_size
            written = self._written.pop(path, None)
            digest = written[1] if written and written[0] == size else file_digest(path)
            files.append({"path": path.relative_to(tmp).as_posix(), "bytes": size, HASH: digest})
        return sorted(files, key=lambda f: f["path"])

    def _hide(self, path: Path, kind: str) -> Path:
        """Rename ``path`` to a hidden temporary name (atomic: it stops being a checkpoint at once)."""
        hidden = self.root / f"{TMP_MARK}{kind}{path.name}-{secrets.token_hex(4)}"
        os.rename(path, hidden)
        fsync_dir(self.root)
        return hidden

    def rotate(self, protect: Path | None = None) -> list[Path]:
        """Remove committed checkpoints beyond the newest ``keep`` sound ones (never ``protect``); returns them.

        Those ``newest_sound()`` found damaged do not count among the ``keep`` and are removed: with keep=2,
        a damaged step 8 and the run resumed from step 4, the save of step 6 keeps steps 4 and 6.
        """
        committed = self.committed()
        sound = [c.path for c in committed if c.path not in self.damaged]
        kept = set(sound[-self.keep:])
        if protect is not None and protect not in kept:  # a step lower than those on disk was just saved
            others = [path for path in sound if path != protect]
            kept = {protect, *others[-(self.keep - 1):]}
        removed = []
        for checkpoint in committed:
            if checkpoint.path not in kept:
                shutil.rmtree(self._hide(checkpoint.path, "delete-"), ignore_errors=True)
                removed.append(checkpoint.path)
        return removed

    # ----------------------------------------------------------------------------------- reading

    def committed(self) -> list[Checkpoint]:
        """Every valid committed checkpoint, oldest step first."""
        found = []
        for path in self.root.iterdir():
            checkpoint, _ = self._check(path)
            if checkpoint is not None:
                found.append(checkpoint)
        return sorted(found, key=lambda c: c.step)

    def latest(self) -> Path | None:
        """The committed checkpoint with the highest step, or None; incomplete folders are never returned,
        nor those ``newest_sound()`` found damaged. Sizes only: ``newest_sound()`` reads the contents."""
        sound = [c.path for c in self.committed() if c.path not in self.damaged]
        return sound[-1] if sound else None

    def newest_sound(self) -> tuple[Checkpoint | None, list[str]]:
        """The newest committed checkpoint whose files match their checksums, or None; and what to say.

        Reads every file of the newest checkpoint (and of older ones while those are damaged): call it once,
        when resuming. Each damaged one gives one line per file (``step-000008: model.pt: checksum differs
        from COMMITTED.json; skipped``) and is remembered in ``damaged``; a checkpoint of the earlier format
        without checksums is used on its sizes alone, with a note.
        """
        lines = []
        for checkpoint in reversed(self.committed()):
            problems = self.verify(checkpoint.path)
            if not problems:
                if not checkpoint.checksummed:
                    lines.append(f"note: {checkpoint.path.name} was written by an earlier version without "
                                 "checksums: its file sizes are checked, not their contents")
                return checkpoint, lines
            self.damaged.add(checkpoint.path)
            lines.extend(f"{checkpoint.path.name}: {problem}; skipped" for problem in problems)
        return None, lines

    def broken(self) -> list[tuple[Path, str]]:
        """``step-*`` folders that are not valid checkpoints, with why (for the caller to warn about)."""
        found = []
        for path in sorted(self.root.iterdir()):
            if _STEP_DIR.match(path.name):
                checkpoint, reason = self._check(path)
                if checkpoint is None:
                    found.append((path, reason))
        return found

    def clean_stale(self) -> list[Path]:
        """Remove what killed saves and rotations left (hidden ``.tmp-*`` entries); call it at start."""
        removed = []
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(TMP_MARK):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
        return removed

    def verify(self, path: Path) -> list[str]:
        """Problems of one checkpoint folder, each naming its file; empty when it is sound.

        Sizes as ``committed()`` checks them, then the marker's own digest and every file's, read back.
        """
        checkpoint, reason = self._check(Path(path))
        if checkpoint is None:
            return [reason]
        marker, problems = checkpoint.marker, []
        if marker["format"] == FORMAT and marker.get(HASH) != _marker_digest(marker):
            problems.append(f"{MARKER}: its content differs from its checksum")
        for entry in checkpoint.files:
            for name in (n for n in _DIGESTS if n in entry):
                try:
                    if _DIGESTS[name](checkpoint.path / entry["path"]) != entry[name]:
                        problems.append(f"{entry['path']}: checksum differs from {MARKER}")
                except OSError as error:
                    problems.append(f"{entry['path']}: unreadable ({error.strerror or error})")
        return problems

    def _check(self, path: Path) -> tuple[Checkpoint | None, str]:
        match = _STEP_DIR.match(path.name)
        if match is None or not path.is_dir():
            return None, "not a step-NNNNNN folder"
        try:
            marker = read_json(path / MARKER)
        except FileNotFoundError:
            return None, f"no {MARKER} (a save that did not finish)"
        except (OSError, ValueError) as error:
            return None, f"unreadable {MARKER}: {error}"
        if not isinstance(marker, dict) or marker.get("format") not in (FORMAT, EARLIER_FORMAT):
            return None, f"{MARKER} is not an {FORMAT} marker"
        if marker.get("step") != int(match.group(1)):
            return None, f"{MARKER} is for step {marker.get('step')!r}"
        files = marker.get("files")
        if not isinstance(files, list):
            return None, f"{MARKER} has no file list"
        for entry in files:
            if not isinstance(entry, dict):
                return None, f"{MARKER} has a malformed file entry"
            relative = PurePosixPath(str(entry.get("path", "")))
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                return None, f"{MARKER} names a file outside the folder: {entry.get('path')!r}"
            if marker["format"] == FORMAT and not isinstance(entry.get(HASH), str):
                return None, f"{MARKER} has no checksum for {relative}"
            try:
                size = (path / relative).stat().st_size
            except OSError:
                return None, f"{relative} is missing"
            if size != entry.get("bytes"):
                return None, f"{relative} has {size} bytes, the marker says {entry.get('bytes')}"
        return Checkpoint(path, marker["step"], marker.get("meta") or {}, int(marker.get("bytes", 0)), files,
                          marker), ""

    # ---------------------------------------------------------------------------------- disk check

    def preflight(self, checkpoint_bytes: int, export_bytes: int = 0) -> Preflight:
        """Refuse (UserError, one line) unless the free space holds what this run will write.

        The run holds at most ``keep + 1`` checkpoints at once (the kept ones and the one being
        written) and writes a final export of ``export_bytes``::

            needed = (keep + 1) * checkpoint_bytes + export_bytes

        less the committed checkpoints already in ``root`` (rotation reuses their space), but always at
        least room for the next one: ``needed = max(keep + 1 - committed, 1) * checkpoint_bytes +
        export_bytes``. Call it at start and before each save: free space changes.
        """
        if checkpoint_bytes <= 0 or export_bytes < 0:
            raise ValueError("checkpoint_bytes must be > 0 and export_bytes >= 0")
        committed = len(self.committed())
        count = max(self.keep + 1 - committed, 1)
        needed = count * checkpoint_bytes + export_bytes
        free = self.free_bytes(self.root)
        if free < needed:
            export = f" + final export of {human_bytes(export_bytes)}" if export_bytes else ""
            fewer = f"keep fewer checkpoints (now {self.keep}), " if self.keep > MIN_KEEP else ""
            raise UserError(
                f"not enough disk space for checkpoints in {self.root}: need {human_bytes(needed)} "
                f"({count} x {human_bytes(checkpoint_bytes)} checkpoint{export}), {human_bytes(free)} free; "
                f"{fewer}free some space, or write checkpoints to another folder")
        return Preflight(self.root, self.keep, checkpoint_bytes, export_bytes, free, committed, needed)
