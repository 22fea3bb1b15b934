"""A loopback stand-in for the Hugging Face Hub (a fake, bounded): enough of its HTTP API for `huggingface_hub`
to create a dataset repo and a branch, read repo info and trees, validate a card, and commit files, small ones
inline (base64 "regular" uploads) and Parquet through the LFS batch API with basic PUT transfers.

Files whose path matches the repo's `.gitattributes` LFS rule (`*.parquet`) or whose first bytes hold a NUL go
through LFS, as on the Hub. Xet is not offered: clients must run with `HF_HUB_DISABLE_XET=1`. Every API request
must carry the expected bearer token. The server runs in a daemon thread on 127.0.0.1 and stops with `stop()`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
REPO_API = re.compile(r"^/api/datasets/(?P<repo>[^/]+/[^/]+?)(?:/(?P<op>revision|tree|preupload|commit|branch)"
                      r"(?:/(?P<rest>.*))?)?$")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, as the Hub reports it for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    summary: str


@dataclass
class Repo:
    private: bool
    branches: dict[str, list[Commit]] = field(default_factory=dict)

    def head(self, revision: str) -> Commit | None:
        if revision in self.branches:
            return self.branches[revision][-1]
        return next((c for commits in self.branches.values() for c in commits if c.sha == revision), None)


class FakeHub:
    """State: repos (branches of commits, each a full snapshot), the LFS store, and what was asked of it."""

    def __init__(self, token: str, owners: tuple[str, ...] = ("alice",), delay: float = 0.0) -> None:
        self.token, self.owners = token, owners
        self.delay = delay  # seconds each request waits after its body arrived, before it is answered
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.auth_headers: set[str] = set()
        self.received: list[tuple[str, bytes]] = []  # every file body that reached the server (path, bytes)
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                hub._dispatch(self, "GET")

            def do_POST(self) -> None:
                hub._dispatch(self, "POST")

            def do_PUT(self) -> None:
                hub._dispatch(self, "PUT")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- plumbing ---------------------------------------------------------------------------------------------

    @staticmethod
    def _body(handler: BaseHTTPRequestHandler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    handler.rfile.readline()
                    return b"".join(parts)
                parts.append(handler.rfile.read(size))
                handler.rfile.readline()
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        body = self._body(handler)
        with self.lock:
            self.requests.append((method, parts.path))
        time.sleep(self.delay)
        with self.lock:
            auth = handler.headers.get("Authorization", "")
            self.auth_headers.add(auth)
            if not parts.path.startswith("/lfs-upload/") and auth != f"Bearer {self.token}":
                return self._send(handler, 401, {"error": "Invalid credentials in Authorization header"})
            status, payload = self._route(method, parts.path, parts.query, body)
        self._send(handler, status, payload)

    def _route(self, method: str, path: str, query: str, body: bytes) -> tuple[int, object]:
        if method == "POST" and path == "/api/repos/create":
            return self._create(json.loads(body))
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate(json.loads(body)["content"])
        if method == "POST" and path.endswith(".git/info/lfs/objects/batch"):
            return self._lfs_batch(json.loads(body))
        if method == "PUT" and path.startswith("/lfs-upload/"):
            oid = path.rsplit("/", 1)[1]
            if hashlib.sha256(body).hexdigest() != oid:
                return 400, {"error": "sha256 mismatch"}
            self.lfs[oid] = body
            return 200, {}
        match = REPO_API.match(path)
        if not match or match["repo"] not in self.repos:
            return 404, {"error": f"Repository not found: {path}"}
        repo, op, rest = self.repos[match["repo"]], match["op"], unquote(match["rest"] or "")
        if method == "GET" and op in (None, "revision"):
            head = repo.head(rest or "main")
            if head is None:
                return 404, {"error": f"Revision not found: {rest}"}
            return 200, {"id": match["repo"], "sha": head.sha, "private": repo.private,
                         "siblings": [{"rfilename": p} for p in sorted(head.files)]}
        if method == "GET" and op == "tree":
            revision, _, folder = rest.partition("/")
            head = repo.head(revision)
            if head is None:
                return 404, {"error": f"Revision not found: {revision}"}
            return 200, [self._entry(p, d) for p, d in sorted(head.files.items()) if p.startswith(folder)]
        if method == "POST" and op == "branch":
            if rest in repo.branches:
                return 409, {"error": "Branch already exists"}
            repo.branches[rest] = [repo.branches["main"][-1]]
            return 200, {}
        if method == "POST" and op == "preupload":
            return self._preupload(repo, rest, json.loads(body))
        if method == "POST" and op == "commit":
            return self._commit(match["repo"], repo, rest, body)
        return 404, {"error": f"not served by this fake: {method} {path}"}

    # -- the Hub's behaviour ----------------------------------------------------------------------------------

    @staticmethod
    def _lfs_path(path: str, data: bytes) -> bool:
        return path.endswith(".parquet") or b"\0" in data[:512]

    def _entry(self, path: str, data: bytes) -> dict:
        entry = {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha1(data)}
        if self._lfs_path(path, data):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _create(self, request: dict) -> tuple[int, object]:
        repo_id = f"{request['organization']}/{request['name']}"
        if request.get("type") != "dataset":
            return 400, {"error": "this fake holds dataset repos only"}
        if request["organization"] not in self.owners:
            return 403, {"error": f"You don't have the rights to create a dataset under the namespace "
                                  f"\"{request['organization']}\""}
        if repo_id in self.repos:
            return 409, {"error": "You already created this dataset repo", "url": f"{self.url}/datasets/{repo_id}"}
        first = Commit(hashlib.sha1(repo_id.encode()).hexdigest(), {".gitattributes": GITATTRIBUTES}, "initial commit")
        self.repos[repo_id] = Repo(private=request.get("visibility") == "private", branches={"main": [first]})
        return 200, {"url": f"{self.url}/datasets/{repo_id}", "name": repo_id}

    @staticmethod
    def _validate(content: str) -> tuple[int, object]:
        if content.startswith("---\n"):
            try:
                meta = yaml.safe_load(content.split("\n---\n", 1)[0][4:])
            except yaml.YAMLError as exc:
                return 400, {"errors": [{"message": f"invalid YAML: {exc}"}]}
            if not isinstance(meta, dict):
                return 400, {"errors": [{"message": "metadata must be a mapping"}]}
        return 200, {"errors": [], "warnings": []}

    def _preupload(self, repo: Repo, revision: str, request: dict) -> tuple[int, object]:
        head = repo.head(revision)
        if head is None:
            return 404, {"error": f"Revision not found: {revision}"}
        files = []
        for item in request["files"]:
            lfs = self._lfs_path(item["path"], base64.b64decode(item["sample"]))
            old = head.files.get(item["path"])
            oid = None if old is None else hashlib.sha256(old).hexdigest() if lfs else git_blob_sha1(old)
            files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        return 200, {"files": files}

    def _lfs_batch(self, request: dict) -> tuple[int, object]:
        objects = []
        for item in request["objects"]:
            entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.lfs:
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{item['oid']}"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}

    def _commit(self, repo_id: str, repo: Repo, revision: str, body: bytes) -> tuple[int, object]:
        if revision not in repo.branches:
            return 404, {"error": f"Invalid rev id: {revision}"}
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        files = dict(repo.branches[revision][-1].files)
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs:
                    return 400, {"error": f"LFS object {value['oid']} was never uploaded"}
                files[value["path"]] = self.lfs[value["oid"]]
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
            elif line["key"] == "deletedFolder":
                files = {p: d for p, d in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            self.received += [(value["path"], files[value["path"]])] if line["key"] in ("file", "lfsFile") else []
        parent = repo.branches[revision][-1].sha
        digest = hashlib.sha1(parent.encode())
        for path, data in sorted(files.items()):
            digest.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
        commit = Commit(digest.hexdigest(), files, lines[0]["value"]["summary"])
        repo.branches[revision].append(commit)
        return 200, {"commitUrl": f"{self.url}/datasets/{repo_id}/commit/{commit.sha}", "commitOid": commit.sha,
                     "pullRequestUrl": None}
