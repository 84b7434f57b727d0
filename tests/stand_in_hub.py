"""A stand-in for the Hugging Face Hub on 127.0.0.1: the HTTP API that huggingface_hub, transformers and
datasets use to download a repository at a revision, for a few repositories held in memory.

Point the clients at it with HF_ENDPOINT. It answers only the commit each repository is given, and
`main` (which resolves to that commit); every request is logged, so a test can check what was asked.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = re.compile(r"^/api/(models|datasets)/(?P<repo>[^/]+(?:/[^/]+)?)/(?P<kind>revision|tree|paths-info)/"
                 r"(?P<revision>[^/]+)(?:/(?P<path>.*))?$")
RESOLVE = re.compile(r"^/(?P<datasets>datasets/)?(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")


class Repository:
    def __init__(self, repo_type: str, repo_id: str, commit: str, files: dict[str, bytes]):
        self.repo_type, self.repo_id, self.commit, self.files = repo_type, repo_id, commit, files

    def entry(self, path: str) -> dict | None:
        """A tree entry (file or folder) as the Hub's API lists it."""
        if path in self.files:
            content = self.files[path]
            return {"type": "file", "path": path, "size": len(content), "oid": hashlib.sha1(content).hexdigest()}
        if any(name.startswith(path.rstrip("/") + "/") for name in self.files) or path in ("", "/"):
            return {"type": "directory", "path": path.strip("/"), "oid": hashlib.sha1(path.encode()).hexdigest()}
        return None

    def tree(self, folder: str, recursive: bool) -> list[dict]:
        folder = folder.strip("/")
        prefix = f"{folder}/" if folder else ""
        names = set()
        for name in self.files:
            if name.startswith(prefix):
                rest = name[len(prefix):]
                names.add(name if recursive or "/" not in rest else prefix + rest.split("/")[0])
                if recursive:  # the folders along the way too
                    parts = rest.split("/")[:-1]
                    names.update(prefix + "/".join(parts[:i + 1]) for i in range(len(parts)))
        return [self.entry(name) for name in sorted(names)]


class StandInHub:
    """`with StandInHub(repositories) as hub:` serves them at `hub.url`; `hub.requests` logs (method, path)."""

    def __init__(self, repositories: list[Repository]):
        self.repositories = {(r.repo_type, r.repo_id): r for r in repositories}
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StandInHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # the test reads hub.requests instead
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict | None = None, error: str | None = None):
                self.send_response(status)
                for key, value in {**(headers or {}), **({"X-Error-Code": error} if error else {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, content) -> None:
                self._reply(200, json.dumps(content).encode(), {"Content-Type": "application/json"})

            def _repository(self, repo_type: str, repo_id: str, revision: str) -> Repository | None:
                repository = hub.repositories.get((repo_type, urllib.parse.unquote(repo_id)))
                if repository is None:
                    self._reply(404, error="RepoNotFound")
                elif urllib.parse.unquote(revision) not in (repository.commit, "main"):
                    self._reply(404, error="RevisionNotFound")
                else:
                    return repository
                return None

            def _serve(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                hub.requests.append((self.command, urllib.parse.unquote(url.path)))
                if url.path == "/":
                    return self._reply(200, b"stand-in hub")
                if match := RESOLVE.match(url.path):
                    repo_type = "dataset" if match["datasets"] else "model"
                    repository = self._repository(repo_type, match["repo"], match["revision"])
                    if repository is None:
                        return None
                    content = repository.files.get(urllib.parse.unquote(match["path"]))
                    if content is None:
                        return self._reply(404, error="EntryNotFound", headers={"X-Repo-Commit": repository.commit})
                    headers = {"X-Repo-Commit": repository.commit, "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
                               "Accept-Ranges": "bytes"}
                    ranged = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                    if ranged:
                        start, end = int(ranged[1]), int(ranged[2] or len(content) - 1)
                        headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
                        return self._reply(206, content[start:end + 1], headers)
                    return self._reply(200, content, headers)
                if match := API.match(url.path):
                    repository = self._repository(match[1][:-1], match["repo"], match["revision"])
                    if repository is None:
                        return None
                    if match["kind"] == "revision":
                        return self._json({"id": repository.repo_id, "sha": repository.commit, "private": False,
                                           "siblings": [{"rfilename": name} for name in sorted(repository.files)]})
                    if match["kind"] == "tree":
                        query = urllib.parse.parse_qs(url.query)
                        recursive = query.get("recursive", ["false"])[0].lower() == "true"
                        folder = urllib.parse.unquote(match["path"] or "")
                        if repository.entry(folder) is None:
                            return self._reply(404, error="EntryNotFound")
                        return self._json(repository.tree(folder, recursive))
                    length = int(self.headers.get("Content-Length", 0))
                    form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                    found = [repository.entry(path) for path in form.get("paths", [])]
                    return self._json([entry for entry in found if entry])
                return self._reply(404, error="RepoNotFound")

            do_GET = do_HEAD = do_POST = _serve

        return Handler
