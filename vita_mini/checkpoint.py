"""Checkpoints and records: written atomically, loaded strictly and safely.

* ``save_checkpoint`` writes to a temporary file in the same folder, flushes it to disk, then
  renames it over the target: a crash at any moment leaves either the old or the new file.
* ``load_checkpoint`` uses ``torch.load(weights_only=True)``, so a checkpoint cannot run code.
  A missing, truncated or foreign file becomes one clear line (VitaError), not a traceback.
* ``check_saved_config`` refuses a checkpoint trained under a different config (names the
  fields). A checkpoint made before a config section was renamed (``data`` -> ``alignment_data``,
  ``sqa`` -> ``spoken_qa``) has its saved config read under the new names, so it still loads.
* ``load_state_strict`` refuses missing, unexpected or mis-shaped tensors: no silent partial loads.
"""

from __future__ import annotations

import json
import os

import torch

from vita_mini.config import Config, upgrade_config_dict
from vita_mini.errors import VitaError


def atomic_write_bytes(path: str, write) -> None:
    """Call ``write(tmp_path)`` then rename tmp onto ``path`` (same folder, so rename is atomic)."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path: str, payload: dict) -> None:
    """``torch.save(payload)`` to ``path``, atomically."""
    atomic_write_bytes(path, lambda tmp: torch.save(payload, tmp))


def save_json(path: str, data) -> None:
    """``data`` as indented JSON at ``path``, atomically."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    atomic_write_bytes(path, write)


def load_json(path: str) -> dict:
    """The JSON object in ``path``."""
    with open(path) as f:
        return json.load(f)


def load_checkpoint(path: str, lazy: bool = False) -> dict:
    """The payload of a vita-mini checkpoint, its config under today's section names; one
    clear line if the file is missing, empty, corrupt or something else.

    ``lazy``: map the tensors instead of reading them (torch.load's mmap), for a caller that only
    reads the small fields (``finished``, ``config``) of a checkpoint of tens of megabytes."""
    if not os.path.exists(path):
        raise VitaError(f"checkpoint '{path}' does not exist")
    if os.path.getsize(path) == 0:
        raise VitaError(f"checkpoint '{path}' is empty (0 bytes)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=lazy)
    except Exception as exc:  # zip errors, unpickling errors, EOF ... all mean the same to a user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VitaError(f"checkpoint '{path}' is corrupt or not a vita-mini checkpoint ({reason[:120]})") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise VitaError(f"checkpoint '{path}' is not a vita-mini checkpoint (no model or config inside)")
    payload["config"] = upgrade_config_dict(payload["config"])
    return payload


def config_differences(saved: dict, current: dict, sections: list[str]) -> list[str]:
    """Fields of the given config sections whose values differ, as 'section.field: saved -> now'.

    A field the saved config does not have (one added to vita-mini after the checkpoint was
    made) counts as saved with its dataclass default: behaviour that did not exist yet was off.
    A whole section it does not have differs: a section stands for a behaviour the checkpoint's
    stage did not have yet (e.g. ``mctp_data``: older stages 2 and 3 drew stage 1's shares)."""
    defaults = Config().to_dict()
    diffs = []
    for section in sections:
        a, b = saved.get(section), current.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                va, vb = a.get(key, defaults.get(section, {}).get(key)), b.get(key)
                if isinstance(va, (list, tuple)) and isinstance(vb, (list, tuple)):
                    va, vb = list(va), list(vb)
                if va != vb:
                    diffs.append(f"{section}.{key}: {va} -> {vb}")
        elif a != b:
            diffs.append(f"{section}: {'absent (older than this section)' if a is None else a} -> {b}")
    return diffs


def check_saved_config(payload: dict, current: dict, sections: list[str], path: str) -> None:
    """One line naming the first differing fields if ``payload`` was made with another config."""
    diffs = config_differences(payload["config"], current, sections)
    if diffs:
        more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
        raise VitaError(f"checkpoint '{path}' was made with another config: "
                        f"{'; '.join(diffs[:3])}{more}")


def load_state_strict(module: torch.nn.Module, state: dict, path: str) -> None:
    """``module.load_state_dict(state, strict=True)``; a mismatch is one line naming ``path``."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise VitaError(f"checkpoint '{path}' does not fit the model: {detail[:200]}") from None
