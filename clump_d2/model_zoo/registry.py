"""Find model-zoo entries by name and hand out their verified weights (see the package doc).

Entries are looked up in the folders of ``$CLUMP_D2_ZOO`` (``os.pathsep``-separated; a rebuilt
or private model zoo, searched first) and then in this package's folder.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

logger = logging.getLogger(__name__)

#: ``MODEL.WEIGHTS: "zoo:sdss_lite0"`` names an entry explicitly.
ZOO_PREFIX = "zoo:"
#: Extra zoo folders, searched before the package's own.
ZOO_ENV = "CLUMP_D2_ZOO"
CARD_FILE = "card.json"
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
#: An entry name: what a user types after ``--model``.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# (path, size, mtime_ns) of weights whose sha256 was already checked in this process.
_VERIFIED: Dict[Tuple[str, int, int], str] = {}


class ModelZooError(LookupError):
    """An unknown model name, or an entry that cannot be used."""


class ZooWeightsMissingError(ModelZooError, FileNotFoundError):
    """A known entry whose weights file is not there; the message names the command that
    rebuilds it."""


class ZooWeightsMismatchError(ModelZooError):
    """Weights whose sha256 is not the one in the model card (a corrupted or replaced file)."""


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo: its folder and its card (``card.json`` as a dict)."""

    name: str
    folder: Path
    card: Dict

    @property
    def config_file(self) -> Path:
        return self.folder / self.card.get("config", CONFIG_FILE)

    @property
    def weights_file(self) -> Path:
        return self.folder / self.card.get("weights", {}).get("file", WEIGHTS_FILE)

    @property
    def sha256(self) -> str:
        return str(self.card.get("weights", {}).get("sha256", ""))

    @property
    def rebuild_command(self) -> str:
        default = f"python tools/model_zoo.py rebuild {self.name}"
        return str(self.card.get("rebuild", {}).get("command", default))


def zoo_root() -> Path:
    """The package's own zoo folder (where shipped models live)."""
    return Path(__file__).resolve().parent


def _roots() -> List[Path]:
    extra = [Path(p) for p in os.environ.get(ZOO_ENV, "").split(os.pathsep) if p.strip()]
    return extra + [zoo_root()]


def list_models() -> List[str]:
    """Names of every entry (folders with a ``card.json``), sorted; an extra zoo's entry hides
    the package's entry of the same name."""
    names = set()
    for root in _roots():
        if root.is_dir():
            names.update(p.parent.name for p in root.glob(f"*/{CARD_FILE}"))
    return sorted(names)


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name`` (``zoo:`` prefix allowed).

    Raises:
        ModelZooError: no such entry (the message lists the known ones), or an unreadable card.
    """
    name = name[len(ZOO_PREFIX):] if name.startswith(ZOO_PREFIX) else name
    if not _NAME.match(name):
        raise ModelZooError(f"{name!r} is not a model-zoo name (letters, digits, _ . -)")
    for root in _roots():
        card_path = root / name / CARD_FILE
        if card_path.is_file():
            try:
                card = json.loads(card_path.read_text())
            except (OSError, ValueError) as e:
                raise ModelZooError(f"{card_path}: unreadable model card ({e})") from e
            return ZooEntry(name=name, folder=card_path.parent, card=card)
    known = ", ".join(list_models()) or "none"
    raise ModelZooError(f"no model called {name!r} in the model zoo (known: {known}; "
                        f"zoo folders: {', '.join(map(str, _roots()))})")


def is_zoo_name(spec: str) -> bool:
    """True if ``spec`` names a zoo entry: ``zoo:<name>``, or a bare ``<name>`` of a known
    entry that is not also an existing file or folder (a path always means the path)."""
    spec = str(spec or "")
    if spec.startswith(ZOO_PREFIX):
        return True
    if not _NAME.match(spec) or os.path.exists(spec):
        return False
    return spec in list_models()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(entry: ZooEntry) -> Path:
    """The entry's weights file, after checking it exists and matches the card's sha256.

    Raises:
        ZooWeightsMissingError: the file is not there (names the rebuild command).
        ZooWeightsMismatchError: its sha256 differs from the card's.
    """
    path = entry.weights_file
    if not path.is_file():
        raise ZooWeightsMissingError(
            f"model {entry.name!r}: its weights {path} are not there. Rebuild them from this "
            f"repository's code and data with: {entry.rebuild_command}")
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if _VERIFIED.get(key) == entry.sha256:
        return path
    actual = sha256_file(path)
    if not entry.sha256 or actual != entry.sha256:
        raise ZooWeightsMismatchError(
            f"model {entry.name!r}: {path} has sha256 {actual}, but its model card "
            f"({entry.folder / CARD_FILE}) says {entry.sha256 or 'nothing'}: the file is "
            f"corrupted or was replaced. Restore it (git checkout / reinstall) or rebuild it "
            f"with: {entry.rebuild_command}")
    _VERIFIED[key] = actual
    logger.info("model zoo: %s -> %s (sha256 verified)", entry.name, path)
    return path


def resolve_weights(spec: str) -> str:
    """``MODEL.WEIGHTS`` as a file path: a zoo name (:func:`is_zoo_name`) becomes its verified
    weights file; anything else is returned unchanged."""
    if not is_zoo_name(spec):
        return spec
    return str(verify_weights(get_entry(spec)))


def zoo_identity(spec: str) -> Optional[Dict[str, str]]:
    """What a run's weights were when they are a zoo name: ``{"zoo": name, "sha256": the
    card's}`` (so resuming with re-packaged weights is noticed); None for anything else."""
    if not is_zoo_name(spec):
        return None
    entry = get_entry(spec)
    return {"zoo": entry.name, "sha256": entry.sha256}


def config_file(name: str) -> str:
    """Path of the entry's complete config (what ``--model <name>`` runs with)."""
    entry = get_entry(name)
    if not entry.config_file.is_file():
        raise ModelZooError(f"model {entry.name!r}: its config {entry.config_file} is missing")
    return str(entry.config_file)


def describe(name: Optional[str] = None) -> str:
    """One line per entry (or the named one): name, title, operating point, weights state."""
    lines = []
    for n in ([name] if name else list_models()):
        entry = get_entry(n)
        state = "weights present" if entry.weights_file.is_file() else "weights missing"
        op = entry.card.get("operating_point", {}).get("score_thresh")
        lines.append(f"{entry.name}: {entry.card.get('title', '')} (operating point {op}; "
                     f"{state}; {entry.folder})")
    return "\n".join(lines)
