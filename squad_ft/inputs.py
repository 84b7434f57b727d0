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
from pathlib import Path

import huggingface_hub

from squad_ft.errors import UserError, first_line
from squad_ft.hub import check_local, hub_reachable

# fingerprint file -> the params.yaml section holding the input, the key naming it, its Hub repo type
INPUTS = {"data": ("data", "source", "dataset"), "heldout": ("heldout", "source", "dataset"),
          "model": ("model", "name", "model")}
HASH_CACHE = Path(".dvc/tmp/input-hashes.json")  # a file's hash, by path, size and modification time
CHUNK = 2**24


def _file_hash(path: Path, cache: dict) -> str:
    stat = path.stat()
    key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns]
    if cache.get(key, {}).get("stamp") != stamp:
        digest = hashlib.sha256()
        with path.open("rb") as content:
            while chunk := content.read(CHUNK):
                digest.update(chunk)
        cache[key] = {"stamp": stamp, "sha256": digest.hexdigest()}
    return cache[key]["sha256"]


def _hidden(relative: Path) -> bool:
    """A file that belongs to a tool, not to the content: .git/, .cache/ (the Hub client's), __pycache__/."""
    return any(part.startswith((".", "__")) for part in relative.parts)


def content_hash(path: Path, cache: dict) -> dict:
    """sha256 of a file, or of a folder's files (relative names and contents, in name order)."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path))) \
        if path.is_dir() else [path]
    if path.is_dir():
        digest = hashlib.sha256()
        for file in files:
            digest.update(f"{file.relative_to(path).as_posix()}\0{_file_hash(file, cache)}\n".encode())
        sha256 = digest.hexdigest()
    else:
        sha256 = _file_hash(path, cache)
    return {"sha256": sha256, "files": len(files), "bytes": sum(file.stat().st_size for file in files)}


def _head_commit(repo_id: str, repo_type: str) -> str | None:
    """The commit a Hub repository's main branch points to now; None when the Hub is not reachable."""
    if not hub_reachable():
        return None
    try:
        return huggingface_hub.HfApi().repo_info(repo_id, repo_type=repo_type).sha
    except Exception as err:  # the Hub client raises many types; the loading stage reports them properly
        print(f"warning: cannot resolve the head of {repo_type} {repo_id!r}: {first_line(err)}", flush=True)
        return None


def fingerprint(params: dict, input_name: str, cache: dict) -> dict:
    """The fingerprint of one input (a key of INPUTS) as params.yaml configures it."""
    section, key, repo_type = INPUTS[input_name]
    name, revision = str(params[section][key]), params[section]["revision"]
    if check_local(name, f"{section}.{key}"):
        return {"source": name, "local": True, **content_hash(Path(name).expanduser(), cache)}
    if revision is not None:
        return {"source": name, "local": False, "revision": str(revision)}
    print(f"warning: {section}.{key} {name!r} is not pinned ({section}.revision is null): the run uses whatever "
          f"the Hub's main branch holds today; pin it with `dvc exp run -S {section}.revision=<commit>`", flush=True)
    return {"source": name, "local": False, "revision": None, "head": _head_commit(name, repo_type)}


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
    if fingerprint["revision"]:
        return f"{fingerprint['source']} (Hub, revision {fingerprint['revision']})"
    return f"{fingerprint['source']} (Hub, not pinned; main is at {fingerprint['head'] or 'unknown: Hub not reachable'})"
