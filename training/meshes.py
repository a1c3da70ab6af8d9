"""Mesh sources (ModelNet, ShapeNet, any folder, procedural), loading, repair and normalisation.

A source is listed cheaply in the parent process as :class:`MeshRef` records; the (possibly slow) loading
happens in the dataset builder's worker processes through :func:`load_ref`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

MESH_SUFFIXES = (".obj", ".off", ".stl", ".ply", ".glb")


class MeshRejectedError(ValueError):
    """A mesh cannot be used; the message is the reason recorded in the manifest."""


@dataclass(frozen=True)
class MeshRef:
    """One mesh to process.

    Attributes:
        mesh_id: stable, unique, file-name-safe identifier (also the resume key).
        kind: ``"file"`` or ``"procedural"``.
        path: the file for ``kind == "file"``.
        index: the generator index for ``kind == "procedural"``.
        seed: the generator seed for ``kind == "procedural"``.
        parts: the most primitives per procedural mesh.
        label: class name or synset when the source has one.
        split_hint: ``"test"`` when the source fixes the test split (ModelNet's test folders), else ``""``.
    """

    mesh_id: str
    kind: str
    path: str = ""
    index: int = 0
    seed: int = 0
    label: str = ""
    split_hint: str = ""
    parts: int = 3


def _safe_id(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]  # noqa: S324 - an identifier, not security
    return f"{keep[-60:]}_{digest}"


def list_modelnet(root: Path) -> list[MeshRef]:
    """List a ModelNet10/40 tree, ``<root>/<class>/{train,test}/*.off``; ModelNet's test folders stay test."""
    refs = []
    for path in sorted(root.glob("*/*/*.off")):
        split = path.parent.name
        if split not in ("train", "test"):
            continue
        rel = path.relative_to(root).with_suffix("").as_posix()
        refs.append(
            MeshRef(
                _safe_id(rel), "file", str(path), label=path.parent.parent.name,
                split_hint="test" if split == "test" else "",
            )
        )
    return refs


def list_shapenet(root: Path) -> list[MeshRef]:
    """List ShapeNetCore v1 (``<synset>/<model>/model.obj``) or v2 (``.../models/model_normalized.obj``)."""
    refs = []
    for model_dir in sorted(p for p in root.glob("*/*") if p.is_dir()):
        for candidate in (model_dir / "model.obj", model_dir / "models" / "model_normalized.obj"):
            if candidate.is_file():
                rel = model_dir.relative_to(root).as_posix()
                refs.append(MeshRef(_safe_id(rel), "file", str(candidate), label=model_dir.parent.name))
                break
    return refs


def list_folder(root: Path) -> list[MeshRef]:
    """List every ``.obj/.off/.stl/.ply/.glb`` file under ``root``, recursively."""
    refs = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in MESH_SUFFIXES:
            rel = path.relative_to(root).as_posix()
            refs.append(MeshRef(_safe_id(rel), "file", str(path), label=path.parent.name))
    return refs


def list_procedural(count: int, seed: int, parts: int = 3) -> list[MeshRef]:
    """List ``count`` procedural meshes of at most ``parts`` primitives, from (seed, index) alone."""
    tag = "" if parts == 3 else f"p{parts}_"
    return [
        MeshRef(f"proc_{tag}s{seed}_{i:06d}", "procedural", index=i, seed=seed, parts=parts)
        for i in range(count)
    ]


def list_source(spec: str, count: int, seed: int) -> list[MeshRef]:
    """Parse a ``--source``: ``procedural[:PARTS]``, ``modelnet:PATH``, ``shapenet:PATH`` or ``folder:PATH``.

    ``procedural:1`` gives single primitives only, ``procedural`` (or ``procedural:3``) up to 3 combined.

    Args:
        spec: the source specification.
        count: number of procedural meshes; for file sources, the most meshes to take (0 means all).
        seed: procedural seed, and the seed of the subset drawn from a larger file source.

    Raises:
        ValueError: unknown kind or missing folder (the message is meant for the user).
    """
    kind, _, arg = spec.partition(":")
    if kind == "procedural":
        if arg not in ("", "1", "2", "3"):
            raise ValueError(f"procedural source takes at most 3 parts: {spec!r}")
        return list_procedural(count, seed, int(arg or 3))
    listers = {"modelnet": list_modelnet, "shapenet": list_shapenet, "folder": list_folder}
    if kind not in listers:
        raise ValueError(
            f"unknown source {spec!r}; use procedural, modelnet:PATH, shapenet:PATH or folder:PATH"
        )
    root = Path(arg)
    if not arg or not root.is_dir():
        raise ValueError(f"source folder {arg!r} does not exist")
    refs = listers[kind](root)
    if not refs:
        raise ValueError(f"no meshes found under {root} for source kind {kind!r}")
    if count and len(refs) > count:
        # A seeded subset across all classes rather than the first classes alphabetically.
        order = np.random.default_rng(seed).permutation(len(refs))[:count]
        refs = [refs[i] for i in sorted(order)]
    return refs


def read_off(path: Path) -> trimesh.Trimesh:
    """Read an OFF file, including ModelNet's malformed first line (``OFF490 518 0``) and polygon faces.

    Raises:
        MeshRejectedError: the file is not a readable OFF mesh.
    """
    try:
        tokens = path.read_text(errors="replace").split()
    except OSError as exc:
        raise MeshRejectedError(f"unreadable: {exc}") from exc
    # Comments are rare in ModelNet but legal; drop them before tokenising would be costlier than this check.
    if not tokens or not tokens[0].upper().startswith("OFF"):
        raise MeshRejectedError("not an OFF file (no OFF header)")
    head = tokens[0][3:]
    rest = tokens[1:]
    if head:  # counts glued to the keyword: "OFF490"
        rest = [head, *rest]
    try:
        n_v, n_f = int(rest[0]), int(rest[1])
        values = rest[3:]
        verts = np.asarray(values[: 3 * n_v], dtype=np.float64).reshape(n_v, 3)
        pos = 3 * n_v
        faces = []
        for _ in range(n_f):
            k = int(values[pos])
            idx = [int(v) for v in values[pos + 1 : pos + 1 + k]]
            pos += 1 + k
            faces.extend([idx[0], idx[j], idx[j + 1]] for j in range(1, k - 1))  # fan triangulation
    except (ValueError, IndexError) as exc:
        raise MeshRejectedError(f"corrupt OFF file: {exc}") from exc
    if n_v == 0 or not faces:
        raise MeshRejectedError("empty mesh")
    faces_arr = np.asarray(faces, dtype=np.int64)
    if faces_arr.max() >= n_v or faces_arr.min() < 0:
        raise MeshRejectedError("corrupt OFF file: face index out of range")
    return trimesh.Trimesh(verts, faces_arr, process=False)


def read_mesh(path: Path) -> trimesh.Trimesh:
    """Read any supported mesh file as one triangle mesh (scenes are concatenated).

    Raises:
        MeshRejectedError: unreadable, corrupt or empty.
    """
    if path.suffix.lower() == ".off":
        return read_off(path)
    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many exception types for corrupt files
        reason = f"corrupt or unreadable {path.suffix} file: {type(exc).__name__}: {exc}"
        raise MeshRejectedError(reason) from exc
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise MeshRejectedError("empty mesh or no triangles")
    return loaded


def repair(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, bool]:
    """Make a mesh watertight if simple repairs can: merge seams, drop degenerate faces, fill holes, orient.

    Returns:
        The repaired mesh and whether anything had to be repaired.

    Raises:
        MeshRejectedError: still not watertight (the reason says what is wrong).
    """
    mesh = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)  # merges duplicate vertices
    if mesh.is_watertight and mesh.is_winding_consistent:
        if mesh.volume < 0:
            mesh.invert()
        return mesh, False
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    trimesh.repair.fill_holes(mesh)
    trimesh.repair.fix_normals(mesh)
    if not mesh.is_watertight:
        open_edges = len(trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1))
        raise MeshRejectedError(f"not watertight after repair ({open_edges} open edges)")
    if not mesh.is_winding_consistent:
        raise MeshRejectedError("inconsistent face winding after repair")
    if mesh.volume < 0:
        mesh.invert()
    return mesh, True


def normalise(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Centre the bounding box at the origin, scale its longest side to 1 (unit cube ``[-0.5, 0.5]^3``).

    Raises:
        MeshRejectedError: degenerate (zero-size) or non-finite mesh.
    """
    verts = np.asarray(mesh.vertices, dtype=np.float64)
    if not np.isfinite(verts).all():
        raise MeshRejectedError("non-finite vertex coordinates")
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    extent = float((hi - lo).max())
    if extent <= 1e-9:
        raise MeshRejectedError("degenerate mesh (zero extent)")
    out = mesh.copy()
    out.vertices = (verts - (lo + hi) / 2.0) / extent
    return out


def load_ref(ref: MeshRef) -> tuple[trimesh.Trimesh, bool]:
    """Load, repair and normalise the mesh behind ``ref``.

    Returns:
        The watertight mesh in the unit cube, and whether it was repaired.

    Raises:
        MeshRejectedError: with the reason.
    """
    if ref.kind == "procedural":
        from training.procedural import generate

        mesh = generate(ref.seed, ref.index, ref.parts)
    else:
        mesh = read_mesh(Path(ref.path))
    mesh, repaired = repair(mesh)
    return normalise(mesh), repaired
