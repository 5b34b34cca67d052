"""Sending a staged release to where people read it: a folder or bucket (any fsspec URL), or a Hugging Face repo.

A staging folder holds a complete release and its ``manifest.json`` (every file with its size and sha256: a
release is a dataset version, see :mod:`overton.corpus.release`).
Publishing it must survive being killed at any moment and rerun, must never leave a release that looks
finished but is not, and must not resend gigabytes that are already there. So:

- At an fsspec destination the release goes to ``DEST/<version>/``. Each file is written under a temporary
  name beside its target and moved into place; ``manifest.json`` goes last and marks the release complete.
  Every file that is in place is read back (size, sha256) before it counts: a rerun keeps what is right,
  re-sends what is wrong or missing, and copies at the destination any file an earlier release there already
  holds with the same sha256 (consecutive versions share most shards). A complete release is immutable.
  ``DEST/releases.json`` lists the complete releases for people and scripts browsing the bucket.
- At ``hf://datasets/OWNER/NAME`` the release is the repository root at a commit tagged ``<version>``, made
  through ``huggingface_hub``'s own commit API: one commit adding the files whose content differs from the
  main branch and deleting those no longer in the release. The Hub's upload skips content it already holds,
  so a killed upload rerun does not send it again. A tag that exists is checked against the release.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from tqdm import tqdm

from overton.corpus.atomic import TMP_MARK, commit
from overton.corpus.dataset import FORMAT, MANIFEST, VERSION_RE
from overton.corpus.errors import Refused, UserError

RELEASE_FILE = MANIFEST  # written last: a release folder without it is unfinished
RELEASES_INDEX = "releases.json"  # at DEST: the complete releases there
VISIBILITIES = ("public", "private")
HUB_PREFIX = "hf://"
_HUB_URL = re.compile(r"hf://datasets/([A-Za-z0-9][\w.-]*)/([A-Za-z0-9][\w.-]*)/?")
_KEEP_ON_HUB = {".gitattributes"}  # made by the Hub with the repository; tells git which files are LFS
_CHUNK = 1 << 20


@dataclass
class TransferReport:
    """What a publish did. Each file manifest.json lists is counted once in sent, reused or verified (manifest.json
    itself, always written or checked, is not counted)."""

    url: str  # the published release: DEST/<version> or the Hub page of the tag
    files_sent: int = 0  # sent from the staging folder
    bytes_sent: int = 0
    files_reused: int = 0  # copied at the destination from an earlier release, or unchanged on the Hub's branch
    files_verified: int = 0  # already there and right
    files_repaired: int = 0  # already there but wrong or missing from a complete release: sent again
    deleted: int = 0  # files of the previous release removed from the Hub's branch


@dataclass(frozen=True)
class Entry:
    """One file of the release, as manifest.json lists it."""

    path: str
    bytes: int
    sha256: str


def publish_folder(staging: Path, dest: str, *, visibility: str | None, say: Callable[[str], None] = print,
                   progress: bool = True) -> TransferReport:
    """Publish the release staged in ``staging`` to ``dest`` (a local path, an fsspec URL or ``hf://datasets/...``).

    ``visibility`` ("public" or "private") is required for the Hub, where it is the repository's; other
    destinations ignore it (who reads a bucket is the bucket's business).
    """
    release, raw = read_staging(staging)
    if dest.startswith(HUB_PREFIX):
        return _publish_hub(staging, release, raw, dest, visibility, say, progress)
    return _publish_fsspec(staging, release, raw, dest, say, progress)


def read_staging(staging: Path) -> tuple[dict[str, Any], bytes]:
    """The staged manifest.json (parsed, and its bytes), once every file it lists is there with its size."""
    try:
        raw = (staging / RELEASE_FILE).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{staging}: no {RELEASE_FILE}, not a staged release") from None
    try:
        release = json.loads(raw)
    except json.JSONDecodeError:
        release = {}
    if release.get("format") != FORMAT or not VERSION_RE.match(str(release.get("version"))):
        raise UserError(f"{staging / RELEASE_FILE}: not an {FORMAT} manifest")
    for entry in entries(release):
        try:
            size = (staging / entry.path).stat().st_size
        except FileNotFoundError:
            raise Refused(f"{staging / entry.path}: listed in {RELEASE_FILE} but missing; stage the release "
                          "again") from None
        if size != entry.bytes:
            raise Refused(f"{staging / entry.path}: {size} bytes, {RELEASE_FILE} says {entry.bytes}; stage the "
                          "release again")
    return release, raw


def entries(release: dict[str, Any]) -> list[Entry]:
    """The files manifest.json lists; a path that would leave the release folder is refused."""
    found = []
    for item in release["files"]:
        path = PurePosixPath(item["path"])
        if (path.is_absolute() or not path.parts or any(p in ("", ".", "..") for p in path.parts)
                or path.name.startswith(".") or str(path) in (RELEASE_FILE, RELEASES_INDEX)):
            raise Refused(f"{RELEASE_FILE}: {item['path']!r} is not a file path inside the release")
        found.append(Entry(str(path), int(item["bytes"]), str(item["sha256"])))
    return found


def _sha256(handle) -> str:
    return hashlib.file_digest(handle, "sha256").hexdigest()


# --- fsspec destinations -------------------------------------------------------------------------------------

def _publish_fsspec(staging: Path, release: dict[str, Any], raw: bytes, dest: str, say: Callable[[str], None],
                    progress: bool) -> TransferReport:
    fs, root, url = _filesystem(dest, staging)
    try:
        return _FolderPublish(fs, root, url, staging, release, raw, say).run(progress)
    except PermissionError as exc:
        raise UserError(f"{url}: access refused ({exc})") from None


def _filesystem(dest: str, staging: Path) -> tuple[fsspec.AbstractFileSystem, str, str]:
    """(file system, folder in it, the destination as messages show it); destination mistakes are one line."""
    if "://" not in dest:
        fs, root = LocalFileSystem(), os.path.abspath(dest)
        url = root
    else:
        try:
            fs, root = fsspec.core.url_to_fs(dest)
        except (ValueError, ImportError) as exc:
            raise UserError(f"{dest}: {exc}") from None
        root, url = root.rstrip("/"), dest.rstrip("/")
    if VERSION_RE.match(root.rsplit("/", 1)[-1]):
        raise UserError(f"{url}: names a version folder; pass the folder that holds the releases "
                        "(each goes to DEST/<version>/)")
    if isinstance(fs, LocalFileSystem):
        _check_local(Path(root), staging)
    return fs, root, url


def _check_local(root: Path, staging: Path) -> None:
    """A local destination may not be inside the staging folder or inside a dataset version."""
    staging = staging.resolve()
    if root == staging or staging in root.parents:
        raise UserError(f"{root}: inside the staging folder {staging}")
    for folder in (root, *root.parents):
        if VERSION_RE.match(folder.name) and (folder / MANIFEST).is_file():
            raise UserError(f"{root}: inside the dataset version {folder}; publish to a folder of its own")


def _is_temporary(path: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.startswith(".") and TMP_MARK in name


def _temporary(path: str) -> str:
    folder, _, name = path.rpartition("/")
    return f"{folder}/.{name}{TMP_MARK}{os.getpid()}"


class _FolderPublish:
    """One publish of a release to ``root/<version>/`` in ``fs``."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, url: str, staging: Path, release: dict[str, Any],
                 raw: bytes, say: Callable[[str], None]):
        self.fs, self.root, self.staging, self.release, self.raw, self.say = fs, root, staging, release, raw, say
        self.version = release["version"]
        self.folder = f"{root}/{self.version}"
        self.url = f"{url}/{self.version}"
        self.report = TransferReport(url=self.url)

    def run(self, progress: bool) -> TransferReport:
        self._remove_leftovers()
        published = self._read(f"{self.folder}/{RELEASE_FILE}")
        if published is not None and published != self.raw:
            raise Refused(f"{self.url}: release {self.version} is already published there with other content; "
                          "a release is immutable: publish a new version")
        complete = published is not None
        releases = self._releases()  # first: refuses a destination holding another dataset's releases
        earlier = {} if complete else self._earlier_files(releases)
        files = entries(self.release)
        with tqdm(total=sum(e.bytes for e in files), unit="B", unit_scale=True, desc=f"publishing {self.version}",
                  disable=None if progress else True) as bar:
            for entry in files:
                self._place(entry, earlier, complete)
                bar.update(entry.bytes)
        if not complete:
            self._write_marker()
        self._write_index()
        return self.report

    def _place(self, entry: Entry, earlier: dict[str, str], complete: bool) -> None:
        """Make ``entry`` right at the destination: keep it if it is, else copy or send it, then check it."""
        final = f"{self.folder}/{entry.path}"
        wrong = self._difference(final, entry)
        if wrong is None:
            self.report.files_verified += 1
            return
        if wrong != "missing" or complete:
            self.say(f"{self.url}/{entry.path}: {wrong} at the destination; sending it again")
            self.report.files_repaired += 1
        source = earlier.get(entry.sha256)
        self.fs.makedirs(final.rpartition("/")[0], exist_ok=True)
        for attempt in (1, 2):
            tmp = _temporary(final)
            if source is not None and attempt == 1:
                self.fs.cp_file(source, tmp)
            else:
                self._send(entry, tmp)
            self._commit(tmp, final)
            wrong = self._difference(final, entry)
            if wrong is None:
                if source is not None and attempt == 1:
                    self.report.files_reused += 1
                else:
                    self.report.files_sent += 1
                return
            if attempt == 1:
                self.say(f"{self.url}/{entry.path}: {wrong} after the transfer; sending it again")
        raise Refused(f"{self.url}/{entry.path}: still {wrong} after sending it again; the destination does not "
                      "keep what it receives")

    def _send(self, entry: Entry, tmp: str) -> None:
        """Copy the staged file to ``tmp``, refusing a staged file that no longer matches manifest.json."""
        digest = hashlib.sha256()
        with open(self.staging / entry.path, "rb") as source, self.fs.open(tmp, "wb") as target:
            while block := source.read(_CHUNK):
                digest.update(block)
                target.write(block)
        self.report.bytes_sent += entry.bytes
        if digest.hexdigest() != entry.sha256:
            self.fs.rm(tmp)
            raise Refused(f"{self.staging / entry.path}: its sha256 is not the one in {RELEASE_FILE}; stage the "
                          "release again")

    def _commit(self, tmp: str, final: str) -> None:
        """Move ``tmp`` into place; on a local disk with fsync first, so a power cut leaves no empty file."""
        if isinstance(self.fs, LocalFileSystem):
            commit(Path(tmp), Path(final))
        else:
            self.fs.mv(tmp, final)

    def _write_bytes(self, final: str, data: bytes) -> None:
        tmp = _temporary(final)
        self.fs.makedirs(final.rpartition("/")[0], exist_ok=True)
        with self.fs.open(tmp, "wb") as handle:
            handle.write(data)
        self._commit(tmp, final)

    def _write_marker(self) -> None:
        final = f"{self.folder}/{RELEASE_FILE}"
        self._write_bytes(final, self.raw)
        if self._read(final) != self.raw:
            raise Refused(f"{self.url}/{RELEASE_FILE}: differs from the staged one after writing it")

    def _difference(self, path: str, entry: Entry) -> str | None:
        """None when ``path`` holds the entry's bytes (size, then sha256 read back), else what is wrong."""
        try:
            size = self.fs.size(path)
        except FileNotFoundError:
            return "missing"
        if size != entry.bytes:
            return f"{size} bytes instead of {entry.bytes}"
        with self.fs.open(path, "rb") as handle:
            if _sha256(handle) != entry.sha256:
                return "other content (sha256 differs)"
        return None

    def _read(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def _remove_leftovers(self) -> None:
        """Delete the temporary files of a killed publish of this release (and of the index)."""
        found = self.fs.find(self.folder) if self.fs.exists(self.folder) else []
        found += [f"{self.root}/{name}" for name in self._names(self.root)]
        leftovers = [path for path in found if _is_temporary(path)]
        for path in leftovers:
            self.fs.rm(path)
        if leftovers:
            self.say(f"{self.url}: removed {len(leftovers)} temporary file(s) left by an interrupted publish")

    def _names(self, folder: str) -> list[str]:
        try:
            return [item.rstrip("/").rsplit("/", 1)[-1] for item in self.fs.ls(folder, detail=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _releases(self) -> dict[str, dict[str, Any]]:
        """The complete releases at the destination, by version; one of another dataset is a user mistake."""
        found = {}
        for name in sorted(self._names(self.root)):
            raw = self._read(f"{self.root}/{name}/{RELEASE_FILE}") if VERSION_RE.match(name) else None
            if raw is None:
                continue
            release = json.loads(raw)
            if release.get("name") != self.release["name"]:
                raise UserError(f"{self.url}: the destination holds releases of the dataset {release.get('name')!r}, "
                                f"not {self.release['name']!r}; publish each dataset to a folder of its own")
            found[name] = release
        return found

    def _earlier_files(self, releases: dict[str, dict[str, Any]]) -> dict[str, str]:
        """sha256 -> a file of an earlier complete release there with that content (checked once copied)."""
        found = {}
        for name, release in releases.items():
            if name != self.version:
                for entry in entries(release):
                    found.setdefault(entry.sha256, f"{self.root}/{name}/{entry.path}")
        return found

    def _write_index(self) -> None:
        """Rewrite DEST/releases.json: each complete release with the date it first appeared in the index."""
        index_path = f"{self.root}/{RELEASES_INDEX}"
        previous = self._read(index_path)
        dates = {r["version"]: r["date"] for r in json.loads(previous)["releases"]} if previous else {}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        releases = [{"version": name, "date": dates.get(name, now), "files": len(release["files"]),
                     "bytes": sum(int(item["bytes"]) for item in release["files"])}
                    for name, release in self._releases().items()]
        index = {"name": self.release["name"], "releases": releases}
        data = (json.dumps(index, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode()
        if data != previous:
            self._write_bytes(index_path, data)


# --- Hugging Face Hub ----------------------------------------------------------------------------------------

def hub_repo(dest: str) -> str:
    """``OWNER/NAME`` of ``hf://datasets/OWNER/NAME``; anything else is one line saying what is expected."""
    match = _HUB_URL.fullmatch(dest)
    if match:
        return f"{match[1]}/{match[2]}"
    if "@" in dest:
        raise UserError(f"{dest}: a release goes to the main branch and a tag named after its version; "
                        "drop the @revision")
    raise UserError(f"{dest}: a Hugging Face destination is hf://datasets/OWNER/NAME")


def hub_visibility(visibility: str | None) -> bool:
    """Whether the repository is private; the publisher must say which, never a default."""
    if visibility not in VISIBILITIES:
        raise UserError("publishing to the Hugging Face Hub needs --public or --private (who may read the "
                        "repository)")
    return visibility == "private"


@dataclass(frozen=True)
class RemoteFile:
    """A file at a revision of the repository: LFS files carry their sha256, others their git blob id."""

    path: str
    size: int
    sha256: str | None
    blob_id: str


@dataclass(frozen=True)
class CommitPlan:
    add: list[str]  # release files whose content the revision lacks
    delete: list[str]  # files of the revision that are not in the release
    keep: list[str]  # release files already there with the same content


def git_blob_id(data: bytes) -> str:
    """The id git gives a file's content: what the Hub reports for a file not stored in LFS."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def plan_commit(local: dict[str, Entry], remote: dict[str, RemoteFile],
                blob_id: Callable[[str], str]) -> CommitPlan:
    """What a commit must change so that the revision holds exactly the release (``blob_id(path)``: the git
    blob id of a local file, asked only for small files the Hub keeps out of LFS)."""
    keep, add = [], []
    for path, entry in sorted(local.items()):
        there = remote.get(path)
        same = there is not None and there.size == entry.bytes and (
            there.sha256 == entry.sha256 if there.sha256 is not None else there.blob_id == blob_id(path))
        (keep if same else add).append(path)
    delete = sorted(path for path in remote if path not in local and path not in _KEEP_ON_HUB)
    return CommitPlan(add, delete, keep)


def _remote_files(listing: Iterable[Any]) -> dict[str, RemoteFile]:
    """``list_repo_tree`` entries (RepoFile, RepoFolder) as RemoteFile by path, folders left out."""
    found = {}
    for item in listing:
        if hasattr(item, "blob_id"):
            lfs = item.lfs.sha256 if item.lfs is not None else None
            found[item.path] = RemoteFile(item.path, item.size, lfs, item.blob_id)
    return found


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of huggingface_hub's HTTP client for a network that fails (its client differs by version)."""
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx", "requests"):
        try:
            found.append(getattr(importlib.import_module(module), "TransportError", None)
                         or importlib.import_module(module).ConnectionError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _publish_hub(staging: Path, release: dict[str, Any], raw: bytes, dest: str, visibility: str | None,
                 say: Callable[[str], None], progress: bool) -> TransferReport:
    repo_id = hub_repo(dest)
    private = hub_visibility(visibility)
    if release.get("release", {}).get("visibility") == "private" and not private:
        raise UserError(f"{staging}: staged for private readers (it may hold texts not licensed for "
                        f"redistribution); stage it with --public to publish it to a public repository")
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    quiet = not progress and not are_progress_bars_disabled()
    if quiet:
        disable_progress_bars()
    try:
        return _HubPublish(repo_id, dest, staging, release, raw, say).run(private)
    except HfHubHTTPError as exc:
        raise UserError(_hub_error(dest, exc)) from None
    except _transport_errors() as exc:
        words = str(exc).splitlines()[0] if str(exc) else "no message"
        raise UserError(f"{dest}: the Hub could not be reached ({type(exc).__name__}: {words}); the same command "
                        "resumes") from None
    finally:
        if quiet:
            enable_progress_bars()


def _hub_error(dest: str, exc: Any) -> str:
    """One line for an HTTP error of the Hub: the status and the server's own words (never the token)."""
    status = exc.response.status_code if exc.response is not None else "?"
    if status == 401:
        return f"{dest}: the Hub refused the credentials (HTTP 401); set HF_TOKEN to a token with write access"
    words = (exc.server_message or str(exc)).strip().splitlines()
    return f"{dest}: the Hub answered HTTP {status}: {words[0] if words else 'no message'}"


class _HubPublish:
    def __init__(self, repo_id: str, dest: str, staging: Path, release: dict[str, Any], raw: bytes,
                 say: Callable[[str], None]):
        from huggingface_hub import HfApi

        self.api, self.repo_id, self.dest, self.staging, self.release, self.say = (
            HfApi(), repo_id, dest, staging, release, say)
        self.version = release["version"]
        self.local = {e.path: e for e in entries(release)}
        self.local[RELEASE_FILE] = Entry(RELEASE_FILE, len(raw), hashlib.sha256(raw).hexdigest())
        self.report = TransferReport(url=f"{self.api.endpoint}/datasets/{repo_id}/tree/{self.version}")

    def run(self, private: bool) -> TransferReport:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        self._ensure_repo(private)
        refs = self.api.list_repo_refs(self.repo_id, repo_type="dataset")
        if any(tag.name == self.version for tag in refs.tags):
            if differing := self._differing(self.version):
                raise Refused(f"{self.dest}: tag {self.version} holds other files than this release ({differing}); "
                              "a release is immutable: publish a new version")
            self.report.files_verified = len(self.local) - 1
            return self.report
        plan = self._plan("main")
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(self.staging / p)) for p in plan.add]
        operations += [CommitOperationDelete(path_in_repo=p) for p in plan.delete]
        if operations:
            oid = self.api.create_commit(self.repo_id, operations, repo_type="dataset", revision="main",
                                         commit_message=f"{self.release['name']} {self.version}").oid
        else:
            oid = next(branch.target_commit for branch in refs.branches if branch.name == "main")
        if differing := self._differing(oid):
            raise Refused(f"{self.dest}: commit {oid[:12]} holds other files than this release ({differing}), so "
                          f"it was not tagged {self.version}; stage the release again and publish it again")
        self.api.create_tag(self.repo_id, tag=self.version, revision=oid, repo_type="dataset",
                            tag_message=f"{self.release['name']} {self.version}")
        sent = [path for path in plan.add if path != RELEASE_FILE]
        self.report.files_sent = len(sent)
        self.report.bytes_sent = sum(self.local[path].bytes for path in sent)
        self.report.files_reused = len([path for path in plan.keep if path != RELEASE_FILE])
        self.report.deleted = len(plan.delete)
        return self.report

    def _ensure_repo(self, private: bool) -> None:
        """Create the repository with the visibility asked for, or check an existing one has it."""
        from huggingface_hub.errors import RepositoryNotFoundError

        wanted = "private" if private else "public"
        try:
            info = self.api.repo_info(self.repo_id, repo_type="dataset")
        except RepositoryNotFoundError:
            self.api.create_repo(self.repo_id, repo_type="dataset", private=private)
            self.say(f"{self.dest}: created ({wanted})")
            return
        if bool(info.private) != private:
            actual = "private" if info.private else "public"
            raise Refused(f"{self.dest} is {actual}: publishing with --{wanted} would change who reads it; pass "
                          f"--{actual}, or change the repository's visibility on the Hub first")

    def _plan(self, revision: str) -> CommitPlan:
        from huggingface_hub.errors import RevisionNotFoundError

        try:
            remote = _remote_files(self.api.list_repo_tree(self.repo_id, recursive=True, revision=revision,
                                                           repo_type="dataset"))
        except RevisionNotFoundError:  # a repository without any commit
            remote = {}
        return plan_commit(self.local, remote, self._blob_id)

    def _blob_id(self, path: str) -> str:
        return git_blob_id((self.staging / path).read_bytes())

    def _differing(self, revision: str) -> str:
        """The first files in which ``revision`` differs from the release (sizes, sha256 or blob ids); "" if none."""
        plan = self._plan(revision)
        return ", ".join((plan.add + plan.delete)[:3])
