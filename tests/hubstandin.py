"""A stand-in for the Hugging Face Hub on 127.0.0.1, for the publishing tests (``HF_ENDPOINT`` points at it).

It answers the calls ``huggingface_hub`` makes to publish a dataset release, in the Hub's JSON:
``create_repo`` (``/api/repos/create``), ``repo_info``, ``list_repo_refs``, ``list_repo_tree``, and
``create_commit`` (``/api/validate-yaml`` for README.md, ``preupload``, the LFS batch API, the LFS upload
PUT, then the ndjson ``commit``), and ``create_tag``. Files whose first 512 bytes hold a NUL, and large files,
go to LFS as on the Hub; the LFS store is shared by the server and answers "already there" for content it
holds, which is what lets an interrupted upload resume without resending. huggingface_hub uploads through
Xet when ``hf_xet`` is installed: tests set ``HF_HUB_DISABLE_XET`` so that it speaks LFS, which this serves.

A token is required to write and to read a private repository, as on the Hub. :attr:`HubStandin.puts`
lists the LFS objects received, in order; with :attr:`HubStandin.hold_puts_after` set to n, uploads after the
n-th hang without being stored, so a test can kill a publish in the middle of its upload.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"
_REPO = r"/api/datasets/(?P<repo>[^/]+/[^/]+)"


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """A file in a commit: its content when kept in git, its sha256 when kept in LFS."""

    size: int
    content: bytes | None = None
    sha256: str | None = None

    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n".encode()

    def entry(self, path: str) -> dict[str, Any]:
        if self.content is not None:
            return {"type": "file", "path": path, "size": self.size, "oid": _git_oid(self.content)}
        pointer = self.pointer()
        return {"type": "file", "path": path, "size": self.size, "oid": _git_oid(pointer),
                "lfs": {"oid": self.sha256, "size": self.size, "pointerSize": len(pointer)}}

    def compared_oid(self) -> str:
        """What preupload reports for an existing file (sha256 for LFS, git blob id otherwise)."""
        return self.sha256 if self.content is None else _git_oid(self.content)


@dataclass
class Repo:
    private: bool
    commits: dict[str, dict[str, Blob]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        return self.branches.get(revision) or self.tags.get(revision) or (
            revision if revision in self.commits else None)

    def add_commit(self, tree: dict[str, Blob], message: str, parent: str | None) -> str:
        oid = hashlib.sha1(json.dumps([parent, message, sorted((p, b.entry(p)["oid"]) for p, b in tree.items())])
                           .encode()).hexdigest()
        self.commits[oid] = tree
        return oid


class Reply(Exception):
    """An HTTP reply; raised to answer early (errors)."""

    def __init__(self, status: int, body: Any = None, **headers: str):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


class HubStandin:
    """The server; a context manager. ``url`` is its endpoint, ``token`` the one token it accepts."""

    def __init__(self, token: str = "hf_standin_secret_0123456789"):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.puts: list[str] = []
        self.hold_puts_after: int | None = None  # later uploads hang, unstored, until released
        self.released = threading.Event()
        self._arrivals = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.standin = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> HubStandin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def held(self) -> bool:
        """Whether the upload arriving now is to hang (see :attr:`hold_puts_after`)."""
        with self._lock:
            self._arrivals += 1
            return self.hold_puts_after is not None and self._arrivals > self.hold_puts_after

    def files(self, repo_id: str, revision: str) -> dict[str, bytes]:
        """The content of every file of ``repo_id`` at ``revision`` (LFS files from the store)."""
        repo = self.repos[repo_id]
        tree = repo.commits[repo.resolve(revision)]
        return {path: blob.content if blob.content is not None else self.lfs[blob.sha256]
                for path, blob in tree.items()}

    # --- the API ---------------------------------------------------------------------------------------------

    def answer(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Reply:
        path, query = unquote(urlsplit(url).path), parse_qs(urlsplit(url).query)
        authorized = self._authorized(headers)
        with self._lock:
            if method == "POST" and path == "/api/validate-yaml":
                return Reply(200, {"errors": [], "warnings": []})
            if method == "POST" and path == "/api/repos/create":
                return self._create(json.loads(body), authorized)
            if method == "PUT" and (m := re.fullmatch(r"/lfs/(\w+)", path)):
                return self._put(m[1], body)
            if m := re.fullmatch(r"/datasets/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
                self._repo(m["repo"], authorized, write=True)
                return self._batch(json.loads(body))
            if m := re.fullmatch(_REPO + r"(?:/revision/(?P<rev>.+))?", path):
                return self._info(m["repo"], m["rev"] or "main", authorized)
            if m := re.fullmatch(_REPO + r"/refs", path):
                repo = self._repo(m["repo"], authorized)
                refs = {kind: [{"name": n, "ref": f"refs/{prefix}/{n}", "targetCommit": c} for n, c in refs.items()]
                        for kind, prefix, refs in (("branches", "heads", repo.branches), ("tags", "tags", repo.tags))}
                return Reply(200, {**refs, "converts": []})
            if m := re.fullmatch(_REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<sub>.+))?", path):
                return self._tree(m["repo"], m["rev"], m["sub"] or "", query, authorized)
            if method == "POST" and (m := re.fullmatch(_REPO + r"/preupload/(?P<rev>.+)", path)):
                return self._preupload(self._repo(m["repo"], authorized, write=True), m["rev"], json.loads(body))
            if method == "POST" and (m := re.fullmatch(_REPO + r"/commit/(?P<rev>.+)", path)):
                return self._commit(m["repo"], self._repo(m["repo"], authorized, write=True), m["rev"], body)
            if method == "POST" and (m := re.fullmatch(_REPO + r"/tag/(?P<rev>.+)", path)):
                return self._tag(self._repo(m["repo"], authorized, write=True), m["rev"], json.loads(body))
        return Reply(404, {"error": f"no route {method} {path}"})

    def _authorized(self, headers: dict[str, str]) -> bool:
        given = headers.get("authorization")
        if given is not None and given != f"Bearer {self.token}":
            raise Reply(401, {"error": "Invalid credentials in Authorization header"},
                        **{"X-Error-Message": "Invalid credentials in Authorization header"})
        return given is not None

    def _repo(self, repo_id: str, authorized: bool, write: bool = False) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not authorized):
            raise Reply(404 if authorized else 401, {"error": "Repository not found"},
                        **{"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        if write and not authorized:
            raise Reply(401, {"error": "You must be authenticated to write"})
        return repo

    def _commit_of(self, repo: Repo, revision: str) -> str:
        oid = repo.resolve(revision)
        if oid is None:
            raise Reply(404, {"error": f"Invalid rev id: {revision}"},
                        **{"X-Error-Code": "RevisionNotFound", "X-Error-Message": f"Invalid rev id: {revision}"})
        return oid

    def _create(self, payload: dict[str, Any], authorized: bool) -> Reply:
        if not authorized:
            raise Reply(401, {"error": "You must be authenticated to create a repository"})
        repo_id = f"{payload['organization']}/{payload['name']}"
        if payload.get("type") != "dataset":
            raise Reply(400, {"error": "this stand-in serves dataset repositories only"})
        if repo_id in self.repos:
            raise Reply(409, {"error": "You already created this dataset repo", "url": self._url(repo_id)})
        private = payload.get("private", payload.get("visibility") == "private")
        repo = self.repos[repo_id] = Repo(private=bool(private))
        tree = {".gitattributes": Blob(len(GITATTRIBUTES), content=GITATTRIBUTES)}
        repo.branches["main"] = repo.add_commit(tree, "initial commit", None)
        return Reply(200, {"url": self._url(repo_id), "name": repo_id, "id": repo_id})

    def _url(self, repo_id: str) -> str:
        return f"{self.url}/datasets/{repo_id}"

    def _info(self, repo_id: str, revision: str, authorized: bool) -> Reply:
        repo = self._repo(repo_id, authorized)
        oid = self._commit_of(repo, revision)
        return Reply(200, {"id": repo_id, "sha": oid, "private": repo.private,
                           "siblings": [{"rfilename": p} for p in sorted(repo.commits[oid])]})

    def _tree(self, repo_id: str, revision: str, sub: str, query: dict[str, list[str]], authorized: bool) -> Reply:
        repo = self._repo(repo_id, authorized)
        tree = repo.commits[self._commit_of(repo, revision)]
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        prefix = f"{sub.rstrip('/')}/" if sub else ""
        listing, folders = [], set()
        for path, blob in sorted(tree.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):].split("/")
            for depth in range(1, len(rest)):
                folders.add(prefix + "/".join(rest[:depth]))
            if recursive or len(rest) == 1:
                listing.append(blob.entry(path))
        listing += [{"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0}
                    for f in sorted(folders) if recursive or "/" not in f[len(prefix):]]
        if sub and not listing:
            raise Reply(404, {"error": "Entry not found"}, **{"X-Error-Code": "EntryNotFound"})
        return Reply(200, listing)

    def _preupload(self, repo: Repo, revision: str, payload: dict[str, Any]) -> Reply:
        tree = repo.commits[self._commit_of(repo, revision)]
        files = []
        for item in payload["files"]:
            sample = base64.b64decode(item["sample"])
            lfs = b"\0" in sample or item["size"] > LFS_THRESHOLD
            there = tree.get(item["path"])
            files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": there.compared_oid() if there is not None else None})
        return Reply(200, {"files": files, "commitOid": repo.branches.get(revision)})

    def _batch(self, payload: dict[str, Any]) -> Reply:
        objects = []
        for item in payload["objects"]:
            answer = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.lfs:
                answer["actions"] = {"upload": {"href": f"{self.url}/lfs/{item['oid']}", "expires_in": 3600}}
            objects.append(answer)
        return Reply(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                     **{"Content-Type": "application/vnd.git-lfs+json"})

    def _put(self, oid: str, body: bytes) -> Reply:
        if hashlib.sha256(body).hexdigest() != oid:
            raise Reply(400, {"error": "content does not match its oid"})
        self.lfs[oid] = body
        self.puts.append(oid)
        return Reply(200, {})

    def _commit(self, repo_id: str, repo: Repo, revision: str, body: bytes) -> Reply:
        parent = self._commit_of(repo, revision)
        tree = dict(repo.commits[parent])
        message = ""
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
                if value.get("parentCommit") not in (None, parent):
                    raise Reply(412, {"error": "parent commit is not the head of the branch"})
            elif key == "file":
                content = base64.b64decode(value["content"])
                tree[value["path"]] = Blob(len(content), content=content)
            elif key == "lfsFile":
                if value["oid"] not in self.lfs:
                    raise Reply(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                tree[value["path"]] = Blob(value["size"], sha256=value["oid"])
            elif key == "deletedFile":
                if tree.pop(value["path"], None) is None:
                    raise Reply(404, {"error": "A file with this name doesn't exist"},
                                **{"X-Error-Code": "EntryNotFound"})
            elif key == "deletedFolder":
                for path in [p for p in tree if p.startswith(value["path"].rstrip("/") + "/")]:
                    del tree[path]
            else:
                raise Reply(400, {"error": f"this stand-in does not know the commit operation {key!r}"})
        oid = repo.add_commit(tree, message, parent)
        repo.branches[revision] = oid
        return Reply(200, {"success": True, "commitOid": oid, "commitUrl": f"{self._url(repo_id)}/commit/{oid}",
                           "pullRequestUrl": None})

    def _tag(self, repo: Repo, revision: str, payload: dict[str, Any]) -> Reply:
        oid = self._commit_of(repo, revision)
        if payload["tag"] in repo.tags:
            raise Reply(409, {"error": f"Tag {payload['tag']} already exists"})
        repo.tags[payload["tag"]] = oid
        return Reply(200, {})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        standin: HubStandin = self.server.standin  # type: ignore[attr-defined]
        body = self._body()
        try:
            if self.command == "PUT" and standin.held():
                standin.released.wait(60)
                raise Reply(503, {"error": "upload interrupted"})
            reply = standin.answer(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        except Reply as error:
            reply = error
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.headers.pop("Content-Type", "application/json"))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = _serve  # noqa: N815 (the names http.server calls)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (overridden signature)
        """Silent: tests read the stand-in's state instead."""
