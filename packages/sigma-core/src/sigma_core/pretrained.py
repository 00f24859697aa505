"""Pretrained weights inside components: shared once, never saved again.

Two mechanisms any plugin can use:

* :func:`shared` — one object per key per model build. The π0.5 components
  (base policy, backbone, vision) all ask for ``shared(("pi05", path, ...),
  load)`` and get the same loaded model, so a 4 B-parameter π0.5 is in memory
  once. :class:`~sigma_core.model.policy.SigmaPolicy` opens a :func:`sharing`
  scope while it builds its slots; outside a scope every call builds its own.
* :func:`register_pretrained` — marks a submodule's weights as loaded from a
  named source. Its tensors are left out of the owner's ``state_dict`` (so a
  checkpoint holds only what Sigma trains: heads, LoRA, projections), a load
  does not miss them (the build loaded them from the source), and the source
  and its fingerprint are recorded in ``sigma.json`` so that a load against
  other base weights fails instead of silently mixing them.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigma_core.errors import SigmaUserError, is_internal_error

if TYPE_CHECKING:  # importing sigma_core must not import torch
    from torch import nn

_POOL: contextvars.ContextVar[dict[Hashable, Any] | None] = contextvars.ContextVar(
    "sigma_shared_pool", default=None
)


@contextmanager
def sharing() -> Iterator[dict[Hashable, Any]]:
    """A scope in which :func:`shared` returns one object per key (nested scopes reuse it)."""
    if _POOL.get() is not None:
        yield _POOL.get()  # type: ignore[misc]
        return
    token = _POOL.set({})
    try:
        yield _POOL.get()  # type: ignore[misc]
    finally:
        _POOL.reset(token)


def shared[T](key: Hashable, factory: Callable[[], T]) -> T:
    """The object for ``key`` in the current :func:`sharing` scope, made by ``factory`` once.

    Outside a scope ``factory()`` is called every time (nothing is shared).
    """
    pool = _POOL.get()
    if pool is None:
        return factory()
    if key not in pool:
        pool[key] = factory()
    return pool[key]


_HASHES: dict[tuple[str, int, int], str] = {}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def weights_fingerprint(path: str | Path) -> str | None:
    """sha256 over the weight files of a local directory (or of one file); None if absent.

    ``sha256(json({relative name: sha256(file)}))`` over files ending in
    .safetensors/.bin/.pt/.pth/.gguf, so renaming or changing any shard changes
    it. File hashes are cached per (path, size, mtime) within a process.
    """
    from sigma_core._fileio import sha256_file

    root = Path(path).expanduser()
    if not root.exists():
        return None
    files = [root] if root.is_file() else sorted(root.rglob("*"))
    digests = {}
    for f in files:
        if not (f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES)):
            continue
        st = f.stat()
        key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _HASHES:
            _HASHES[key] = sha256_file(f)
        digests[str(f.relative_to(root)) if f != root else f.name] = _HASHES[key]
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def source_record(
    source: str, revision: str | None = None, local: str | Path | None = None
) -> dict[str, Any]:
    """``{"source", "revision", "sha256"}`` of a local path (hashed) or a hub id.

    A hub id is hashed only through ``local``, the directory it was downloaded to
    (:func:`local_directory`); without it its sha256 is ``None`` (not compared).
    """
    sha = weights_fingerprint(local if local is not None else source)
    return {"source": str(source), "revision": revision, "sha256": sha}


def is_hub_id(source: str) -> bool:
    """Whether ``source`` reads as a hub repo id (``owner/name``) rather than a path."""
    parts = source.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not source.startswith((".", "~"))
        and "\\" not in source
        and not Path(source).expanduser().exists()
    )


def local_directory(source: str, what: str) -> Path:
    """A local directory for ``source``: the path itself, or the hub snapshot of a repo id.

    A hub id (``owner/name``) that is not a local path is fetched with
    ``huggingface_hub.snapshot_download`` (from its cache when offline), so a
    policy exported with ``--base-model owner/name`` loads on any machine.

    Raises:
        SigmaUserError: neither a local directory nor a downloadable repo (the
            message names ``what``, e.g. ``base_policy.path``).
    """
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    if local.exists():
        raise SigmaUserError(f"{what} {source!r}: a file, not a directory")
    if not is_hub_id(source):
        raise SigmaUserError(f"{what} {source!r}: no such directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source))
    except Exception as e:
        if is_internal_error(e):
            raise
        raise SigmaUserError(
            f"{what} {source!r}: no such local directory, and no hub download "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
            f"download it where the hub is reachable (`hf download {source} --local-dir DIR`) "
            "and point the path at DIR"
        ) from e


def register_pretrained(
    owner: nn.Module, name: str, record: Mapping[str, Any], keep: Iterable[str] = ()
) -> None:
    """Mark ``owner.<name>`` as pretrained weights loaded from ``record`` at build time.

    Every tensor under ``<name>.`` (parameters, buffers, quantization state) is
    dropped from ``owner.state_dict()`` except the parameter names in ``keep``
    (relative to ``owner``, e.g. the LoRA matrices peft injected into it), and a
    ``load_state_dict`` that lacks them does not report them missing. Call it
    after any wrapping (peft) so that ``keep`` names the final parameters.
    """
    kept = frozenset(keep)
    sources = dict(getattr(owner, "pretrained_sources", {}))
    sources[name] = dict(record)
    owner.pretrained_sources = sources  # type: ignore[assignment]
    excluded: list[tuple[str, frozenset[str]]] = getattr(owner, "_sigma_excluded", [])
    first = not excluded
    excluded.append((f"{name}.", kept))
    owner._sigma_excluded = excluded  # type: ignore[assignment]
    if first:
        owner.register_state_dict_post_hook(_drop_pretrained)
        owner.register_load_state_dict_pre_hook(_remember_prefix)
        owner.register_load_state_dict_post_hook(_forgive_pretrained)


def is_pretrained(owner: nn.Module, relative_name: str) -> bool:
    """Whether ``relative_name`` (a state key relative to ``owner``) is left out of its state."""
    for prefix, kept in getattr(owner, "_sigma_excluded", ()):
        if relative_name.startswith(prefix) and relative_name not in kept:
            return True
    return False


def _drop_pretrained(
    module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Mapping[str, Any]
) -> None:
    for key in [k for k in state if k.startswith(prefix)]:
        if is_pretrained(module, key[len(prefix) :]):
            del state[key]


def _remember_prefix(module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    module._sigma_load_prefix = prefix  # type: ignore[assignment]


def _forgive_pretrained(module: nn.Module, incompatible: Any) -> None:
    prefix = getattr(module, "_sigma_load_prefix", "")
    incompatible.missing_keys[:] = [
        k
        for k in incompatible.missing_keys
        if not (k.startswith(prefix) and is_pretrained(module, k[len(prefix) :]))
    ]
