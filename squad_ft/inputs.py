"""What each input of the pipeline is, in a few bytes DVC can track: a Hub id at its revision, or a
local path with the hash of its content.

params.yaml names the inputs only as strings, so on its own DVC cannot see new content under the
same name. The `inputs` stage writes one fingerprint per input on every `dvc repro`; a stage that
reads an input depends on its fingerprint, and re-runs exactly when the content changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import huggingface_hub

from squad_ft.errors import UserError, first_line
from squad_ft.hub import check_local, hub_reachable

# fingerprint file -> the params.yaml section holding the input, the key naming it, its Hub repo type
INPUTS = {"data": ("data", "source", "dataset"), "heldout": ("heldout", "source", "dataset"),
          "model": ("model", "name", "model")}
HASH_CACHE = Path(".dvc/tmp/input-hashes.json")  # a file's hash, by path and stat stamp (_stamp)
CHUNK = 2**24
# A file changed this recently is hashed again every time: within a file system's timestamp granularity a
# second write can leave every stamp as it was.
RECENT_S = 2.0
COMMIT = re.compile(r"^[0-9a-f]{40}$")  # a Hub revision that is a commit: it cannot move


def _stamp(stat: os.stat_result) -> list[int]:
    """What changes whenever a file's content may have: size, modification time, inode, and the status-change
    time, which `touch -r`, `cp -p`, `rsync -a` and `tar x` cannot set back (they set the modification time)."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns]


def _file_hash(path: Path, cache: dict) -> str:
    stat = path.stat()
    key, stamp = str(path.resolve()), _stamp(stat)
    recent = time.time() - max(stat.st_mtime, stat.st_ctime) < RECENT_S
    if recent or cache.get(key, {}).get("stamp") != stamp:
        digest = hashlib.sha256()
        with path.open("rb") as content:
            while chunk := content.read(CHUNK):
                digest.update(chunk)
        if recent:
            cache.pop(key, None)
            return digest.hexdigest()
        cache[key] = {"stamp": stamp, "sha256": digest.hexdigest()}
    return cache[key]["sha256"]


def _hidden(relative: Path) -> bool:
    """A file that belongs to a tool, not to the content: .git/, .cache/ (the Hub client's), __pycache__/."""
    return any(part.startswith((".", "__")) for part in relative.parts)


def _files(folder: Path) -> list[Path]:
    """Every file under `folder`, symbolic links to folders followed (a model folder may link its weights in
    from elsewhere); a link that leads back into a folder being walked is a UserError."""
    found = []
    for root, folders, files in os.walk(folder, followlinks=True):
        above = Path(root).relative_to(folder).parents  # the folders between `folder` and this one
        if os.path.realpath(root) in {os.path.realpath(folder / parent) for parent in above}:
            raise UserError(f"{folder}: the symbolic link {root} leads back to a folder it is in: cannot hash it")
        folders[:] = [name for name in folders if not _hidden(Path(name))]
        found += [Path(root, name) for name in files if not _hidden(Path(name))]
    return sorted(found, key=lambda file: file.relative_to(folder).as_posix())


def content_hash(path: Path, cache: dict) -> dict:
    """sha256 of a file, or of a folder's files (relative names and contents, in name order)."""
    files = _files(path) if path.is_dir() else [path]
    if path.is_dir():
        digest = hashlib.sha256()
        for file in files:
            digest.update(f"{file.relative_to(path).as_posix()}\0{_file_hash(file, cache)}\n".encode())
        sha256 = digest.hexdigest()
    else:
        sha256 = _file_hash(path, cache)
    return {"sha256": sha256, "files": len(files), "bytes": sum(file.stat().st_size for file in files)}


def _commit_of(repo_id: str, repo_type: str, revision: str = "main") -> str | None:
    """The commit a Hub repository's branch or tag `revision` points to now; None when the Hub is not reachable."""
    if not hub_reachable():
        print(f"warning: {repo_type} {repo_id!r} at {revision!r}: the Hub is not reachable, so the commit it points "
              "to is unknown and a move of it goes unseen; pin a commit", flush=True)
        return None
    try:
        return huggingface_hub.HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision).sha
    except Exception as err:  # the Hub client raises many types; the loading stage reports them properly
        print(f"warning: cannot resolve {revision!r} of {repo_type} {repo_id!r}: {first_line(err)}", flush=True)
        return None


def fingerprint(params: dict, input_name: str, cache: dict) -> dict:
    """The fingerprint of one input (a key of INPUTS) as params.yaml configures it."""
    section, key, repo_type = INPUTS[input_name]
    name, revision = str(params[section][key]), params[section]["revision"]
    if check_local(name, f"{section}.{key}"):
        return {"source": name, "local": True, **content_hash(Path(name).expanduser(), cache)}
    if revision is not None and COMMIT.match(str(revision)):
        return {"source": name, "local": False, "revision": str(revision)}
    if revision is not None:  # a branch or tag moves: record the commit it points to now, so that a move re-runs
        return {"source": name, "local": False, "revision": str(revision), "commit": _commit_of(name, repo_type, str(revision))}
    print(f"warning: {section}.{key} {name!r} is not pinned ({section}.revision is null): the run uses whatever "
          f"the Hub's main branch holds today; pin it with `dvc exp run -S {section}.revision=<commit>`", flush=True)
    return {"source": name, "local": False, "revision": None, "head": _commit_of(name, repo_type)}


def load_hash_cache() -> dict:
    try:
        return json.loads(HASH_CACHE.read_text())
    except (OSError, ValueError):
        return {}


def save_hash_cache(cache: dict) -> None:
    if HASH_CACHE.parent.parent.is_dir():  # a DVC project (.dvc/): keep the hashes for the next run
        HASH_CACHE.parent.mkdir(exist_ok=True)
        tmp = HASH_CACHE.with_name(f".{HASH_CACHE.name}.{os.getpid()}")
        tmp.write_text(json.dumps(cache))
        tmp.replace(HASH_CACHE)


def read_fingerprint(path: Path) -> dict:
    """A fingerprint the `inputs` stage wrote, for the metrics and model cards."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read the input fingerprint {path}: {first_line(err)}; run `dvc repro inputs`") from err


def describe(fingerprint: dict) -> str:
    """One line: what the input is."""
    if fingerprint["local"]:
        return (f"{fingerprint['source']} (local, {fingerprint['files']} file(s), {fingerprint['bytes']:,} bytes, "
                f"sha256 {fingerprint['sha256'][:12]})")
    if fingerprint["revision"] and "commit" in fingerprint:
        return (f"{fingerprint['source']} (Hub, revision {fingerprint['revision']}, at commit "
                f"{fingerprint['commit'] or 'unknown: Hub not reachable'})")
    if fingerprint["revision"]:
        return f"{fingerprint['source']} (Hub, revision {fingerprint['revision']})"
    return f"{fingerprint['source']} (Hub, not pinned; main is at {fingerprint['head'] or 'unknown: Hub not reachable'})"
