"""Where models already sit on this machine: the Hugging Face cache, Ollama's store, LM Studio's folders, and
folders a user names. Files only (nothing is loaded, nothing downloaded); `models.resolve` takes an Ollama name
through `ollama_gguf`, and `tunesmith models` (catalog.py) describes what `find` lists.

Ollama keeps each model as a GGUF blob behind a manifest: `<store>/manifests/<registry>/<namespace>/<name>/<tag>`
is JSON whose layer of mediaType `application/vnd.ollama.image.model` names `<store>/blobs/sha256-<hex>`.
The store is $OLLAMA_MODELS, ~/.ollama/models, or /usr/share/ollama/.ollama/models (the Linux service's).
LM Studio keeps `<publisher>/<repo>/<file>.gguf` under ~/.lmstudio/models (or ~/.cache/lm-studio/models).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
STORES = ("hf-cache", "ollama", "lm-studio", "folder")


@dataclass(frozen=True)
class StoredModel:
    """A model found on disk: `name` is what --model takes for it."""

    name: str
    store: str  # one of STORES
    path: Path  # a folder with config.json, or a .gguf file
    size_bytes: int


def find(folders: list[Path] = ()) -> list[StoredModel]:
    """Every model in the known stores, then in `folders` (each a model folder, a .gguf, or a folder of them)."""
    return [*hf_cache(), *ollama(), *lm_studio(), *(m for f in folders for m in in_folder(f))]


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def hf_cache() -> list[StoredModel]:
    """Snapshots of models in the Hugging Face cache that have a config.json (a tokenizer-only repo is left out)."""
    from huggingface_hub import constants

    out = []
    for repo in sorted(Path(constants.HF_HUB_CACHE).glob("models--*")):
        snapshots = sorted((s for s in (repo / "snapshots").glob("*") if (s / "config.json").is_file()),
                           key=lambda s: s.stat().st_mtime)
        if snapshots:
            name = repo.name.removeprefix("models--").replace("--", "/", 1)
            out.append(StoredModel(name, "hf-cache", snapshots[-1], _size(snapshots[-1])))
    return out


def ollama_roots() -> list[Path]:
    given = os.environ.get("OLLAMA_MODELS")
    roots = [Path(given)] if given else [Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]
    return [r for r in roots if (r / "manifests").is_dir()]


def ollama() -> list[StoredModel]:
    """Ollama's models by the names `ollama list` shows (library models without `registry.../library/`)."""
    out = []
    for root in ollama_roots():
        for manifest in sorted(p for p in (root / "manifests").rglob("*") if p.is_file()):
            blob = _model_blob(root, manifest)
            if blob is not None:
                out.append(StoredModel(_ollama_name(root, manifest), "ollama", blob, blob.stat().st_size))
    return out


def _ollama_name(root: Path, manifest: Path) -> str:
    registry, *namespace, model, tag = manifest.relative_to(root / "manifests").parts
    prefix = "" if registry == "registry.ollama.ai" and namespace == ["library"] else "/".join(
        ([registry] if registry != "registry.ollama.ai" else []) + namespace) + "/"
    return f"{prefix}{model}:{tag}"


def _model_blob(root: Path, manifest: Path) -> Path | None:
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
    except (OSError, ValueError, AttributeError):
        return None  # not a manifest (Ollama writes nothing else there, but a user might)
    digest = next((layer.get("digest", "") for layer in layers if isinstance(layer, dict)
                   and layer.get("mediaType") == OLLAMA_MODEL_LAYER), "")
    blob = root / "blobs" / digest.replace(":", "-")
    return blob if digest and blob.is_file() else None


def ollama_gguf(name: str) -> Path | None:
    """The GGUF blob of an Ollama model name (`qwen2.5:0.5b`, `qwen2.5` for `:latest`), or None."""
    wanted = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
    return next((m.path for m in ollama() if m.name == wanted), None)


def lm_studio_roots() -> list[Path]:
    home = Path.home()
    return [r for r in (home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models") if r.is_dir()]


def lm_studio() -> list[StoredModel]:
    """LM Studio's GGUF files (a multi-part model is listed by its first part; mmproj files are not models)."""
    out = []
    for root in lm_studio_roots():
        for gguf in sorted(root.rglob("*.gguf")):
            if "mmproj" in gguf.name.lower() or ("-of-" in gguf.name and "-00001-of-" not in gguf.name):
                continue
            out.append(StoredModel(str(gguf), "lm-studio", gguf, gguf.stat().st_size))
    return out


def in_folder(folder: Path) -> list[StoredModel]:
    """A model folder or .gguf given by path, or the ones directly inside a folder of them."""
    folder = folder.expanduser()
    if folder.suffix == ".gguf" and folder.is_file() or (folder / "config.json").is_file():
        return [StoredModel(str(folder), "folder", folder, _size(folder))]
    if not folder.is_dir():
        return []
    return [StoredModel(str(p), "folder", p, _size(p)) for p in sorted(folder.iterdir())
            if (p.suffix == ".gguf" and p.is_file()) or (p / "config.json").is_file()]
