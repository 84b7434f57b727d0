"""Where an input comes from: a local path, or the Hugging Face Hub (fail fast when it is unreachable)."""
from __future__ import annotations

import functools
import urllib.error
import urllib.request
from pathlib import Path

import datasets
import huggingface_hub

from squad_ft.errors import UserError

PROBE_TIMEOUT_S = 3


def looks_local(name: str) -> bool:
    """Whether `name` is meant as a local path rather than a Hub id ("org/name" or "name")."""
    path = Path(name).expanduser()
    return (
        path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1
        or ("/" in name and Path(name.split("/")[0]).is_dir())  # e.g. models/base, next to models/full
    )


def check_local(name: str, parameter: str) -> bool:
    """True for an existing local path; a UserError for a local path that does not exist."""
    if Path(name).expanduser().exists():
        return True
    if looks_local(name):
        raise UserError(f"{parameter}: no such file or directory: {name}")
    return False


@functools.cache
def hub_reachable() -> bool:
    """Whether the Hub answers within a few seconds. If not, switch the Hub clients to offline mode.

    Offline, they read their local cache at once instead of retrying for half a minute, and a
    name that is not cached fails fast with the loader's one clear line.
    """
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return False
    try:
        urllib.request.urlopen(huggingface_hub.constants.ENDPOINT, timeout=PROBE_TIMEOUT_S).close()
        return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (urllib.error.URLError, OSError, ValueError):
        huggingface_hub.constants.HF_HUB_OFFLINE = True
        datasets.config.HF_HUB_OFFLINE = True
        return False


def unreachable_note() -> str:
    return "" if hub_reachable() else " The Hugging Face Hub is not reachable from here (or HF_HUB_OFFLINE is set)."
