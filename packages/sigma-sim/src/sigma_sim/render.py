"""Fast rendering for the SO-101 scene: low-poly visual meshes, cached on disk.

The SO-101 model that ``so101-nexus`` ships (MuJoCo Menagerie) draws about
350k triangles of visual STL meshes, which makes software (EGL/llvmpipe)
rendering the bottleneck of recording. :func:`lowpoly_model_dir` builds, once,
a copy of the model directory whose *visual* meshes are decimated with
``fast_simplification``; everything that physics reads is kept byte for byte:

* the gripper collision meshes (``*_part<k>*``), and
* the camera-mount mesh, whose geom carries ``mass="0.012"`` and therefore sets
  the inertia of its body (every other body declares an explicit ``<inertial>``).

Visual geoms have ``contype=conaffinity=0``, so the decimated copies change
pictures only; :func:`physics_fingerprint` lets tests check that claim.

The copy lives under ``$SIGMA_CACHE_DIR`` (default ``$XDG_CACHE_HOME/sigma-vla``
or ``~/.cache/sigma-vla``) in a folder named by a hash of the source files, the
target face count and this module's algorithm version, and is written to a
temporary folder first and renamed into place, so concurrent or interrupted
builds never leave a half-written cache entry. :func:`using_model_dir` points
``so101_nexus`` at such a folder while an environment is being built.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: Bump when the decimation changes, so old cache entries are not reused.
ALGORITHM_VERSION = 1
#: Meshes that must stay unchanged: collision parts and the mass-bearing camera mount.
_KEEP_MARKERS = ("_part", "camera_mount")


def ensure_gl_backend() -> str:
    """Select an off-screen OpenGL backend for MuJoCo (``MUJOCO_GL=egl`` unless set).

    Must run before ``mujoco`` is first imported; returns the backend in use.
    """
    return os.environ.setdefault("MUJOCO_GL", "egl")


def cache_root() -> Path:
    """The folder for Sigma's caches: ``$SIGMA_CACHE_DIR`` or the XDG user cache."""
    if env := os.environ.get("SIGMA_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sigma-vla"


def is_physics_mesh(filename: str) -> bool:
    """Whether a mesh file of the SO-101 model feeds physics (and must be kept)."""
    return any(marker in filename for marker in _KEEP_MARKERS)


def _source_digest(source: Path, max_faces: int) -> str:
    h = hashlib.sha256(f"lowpoly-v{ALGORITHM_VERSION}-faces{max_faces}".encode())
    for path in sorted(source.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(source).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cluster_vertices(
    vertices: np.ndarray, faces: np.ndarray, cell: float
) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-clustering decimation: merge the vertices of each ``cell``-sized voxel.

    Each voxel's vertices collapse to their mean; faces that become degenerate or
    duplicate are dropped (orientation of the survivors is kept).
    """
    import numpy as np

    keys = np.floor((vertices - vertices.min(0)) / cell).astype(np.int64)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n = int(inverse.max()) + 1
    merged = np.zeros((n, 3))
    np.add.at(merged, inverse, vertices)
    merged /= np.bincount(inverse, minlength=n)[:, None]
    tri = inverse[faces]
    tri = tri[(tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])]
    _, first = np.unique(np.sort(tri, axis=1), axis=0, return_index=True)
    tri = tri[np.sort(first)]
    used, compact = np.unique(tri, return_inverse=True)
    return merged[used], compact.reshape(-1, 3)


def decimate(
    vertices: np.ndarray, faces: np.ndarray, max_faces: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a triangle mesh to at most ``max_faces`` faces.

    Quadric edge collapse (``fast_simplification``) goes first because it keeps
    the shape best; on the Menagerie CAD meshes it stalls at about half the
    faces (its flip test rejects most collapses between long, thin CAD
    triangles), so vertex clustering with the largest voxel that meets the budget
    (found by bisection) finishes the job.
    """
    import fast_simplification
    import numpy as np

    if len(faces) <= max_faces:
        return vertices, faces
    vertices, faces = fast_simplification.simplify(
        np.ascontiguousarray(vertices, dtype=np.float64),
        np.ascontiguousarray(faces, dtype=np.int64),
        target_count=max_faces,
    )
    if len(faces) <= max_faces:
        return vertices, faces
    lo, hi = 1e-6, float(np.ptp(vertices, axis=0).max())
    best = cluster_vertices(vertices, faces, hi)
    for _ in range(30):
        mid = (lo * hi) ** 0.5
        candidate = cluster_vertices(vertices, faces, mid)
        if len(candidate[1]) <= max_faces:
            hi, best = mid, candidate
        else:
            lo = mid
    return best


def decimate_stl(src: Path, dst: Path, max_faces: int) -> tuple[int, int]:
    """Write a copy of the STL ``src`` with at most ``max_faces`` triangles.

    Returns the face counts (before, after). Meshes already small enough are copied.
    """
    import trimesh

    mesh = trimesh.load_mesh(src, file_type="stl", process=True)
    before = len(mesh.faces)
    if before <= max_faces:
        shutil.copyfile(src, dst)
        return before, before
    vertices, faces = decimate(mesh.vertices, mesh.faces, max_faces)
    trimesh.Trimesh(vertices, faces, process=False).export(dst, file_type="stl")
    return before, len(faces)


def lowpoly_model_dir(max_faces: int = 1000, cache_dir: Path | None = None) -> Path:
    """The cached copy of the SO-101 model folder with decimated visual meshes.

    Args:
        max_faces: triangle budget per visual mesh.
        cache_dir: where to keep the copy (default :func:`cache_root`).

    Returns:
        A folder laid out like ``so101_nexus.get_so101_mujoco_model_dir()``.
    """
    import so101_nexus

    source = so101_nexus.get_so101_mujoco_model_dir()
    root = (cache_dir or cache_root()) / "so101-lowpoly"
    final = root / f"{_source_digest(source, max_faces)}-f{max_faces}"
    if (final / "so101.xml").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source)
            out = tmp / rel
            if path.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix.lower() == ".stl" and not is_physics_mesh(path.name):
                decimate_stl(path, out, max_faces)
            else:
                shutil.copyfile(path, out)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same entry first
            if not (final / "so101.xml").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextlib.contextmanager
def using_model_dir(model_dir: Path) -> Iterator[None]:
    """Make ``so101_nexus`` compile its scenes from ``model_dir`` inside the block.

    ``so101_nexus.object_slots.compile_object_scene`` looks the model up through
    ``so101_nexus.get_so101_mujoco_model_dir`` / ``_path`` at call time, so
    swapping those two module attributes is enough (and is undone on exit).
    """
    import so101_nexus

    saved = (so101_nexus.get_so101_mujoco_model_dir, so101_nexus.get_so101_mujoco_model_path)
    so101_nexus.get_so101_mujoco_model_dir = lambda: model_dir  # type: ignore[assignment]
    so101_nexus.get_so101_mujoco_model_path = lambda: model_dir / "so101.xml"  # type: ignore[assignment]
    try:
        yield
    finally:
        so101_nexus.get_so101_mujoco_model_dir, so101_nexus.get_so101_mujoco_model_path = saved


def physics_fingerprint(model: object) -> dict[str, object]:
    """The parts of an ``MjModel`` that physics reads, for comparing two compilations.

    Bodies (mass, inertia, frames), joints, actuators, options, and every geom
    that collides (type, size, frame, friction, contact parameters). Visual-only
    geoms (``contype == conaffinity == 0``) are left out on purpose.
    """
    import numpy as np

    m = model
    colliding = np.flatnonzero((m.geom_contype != 0) | (m.geom_conaffinity != 0))  # type: ignore[attr-defined]
    out: dict[str, object] = {"colliding_geoms": colliding.copy()}
    for name in (
        "body_mass",
        "body_inertia",
        "body_ipos",
        "body_iquat",
        "body_pos",
        "body_quat",
        "jnt_range",
        "dof_damping",
        "dof_armature",
        "actuator_gainprm",
        "actuator_biasprm",
        "actuator_ctrlrange",
    ):
        out[name] = np.array(getattr(m, name))
    for name in ("geom_type", "geom_size", "geom_pos", "geom_quat", "geom_friction", "geom_solref"):
        out[name] = np.array(getattr(m, name))[colliding]
    out["opt_timestep"] = float(m.opt.timestep)  # type: ignore[attr-defined]
    return out
