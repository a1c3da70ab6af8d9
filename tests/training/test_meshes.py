"""Mesh sources, loading, repair, normalisation and the procedural generator."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
trimesh = pytest.importorskip("trimesh")
pytest.importorskip("manifold3d")

from training.meshes import (  # noqa: E402
    MeshRef,
    MeshRejectedError,
    list_folder,
    list_modelnet,
    list_shapenet,
    list_source,
    load_ref,
    read_off,
)
from training.procedural import generate  # noqa: E402

from .conftest import cube_off  # noqa: E402

pytestmark = pytest.mark.training


def _assert_normalised(mesh) -> None:
    extent = mesh.bounds[1] - mesh.bounds[0]
    assert extent.max() == pytest.approx(1.0)
    assert np.allclose((mesh.bounds[0] + mesh.bounds[1]) / 2, 0.0, atol=1e-9)
    assert mesh.is_watertight


def test_modelnet_tree_with_malformed_header(tmp_path):
    for cls in ("chair", "table"):
        for split in ("train", "test"):
            d = tmp_path / cls / split
            d.mkdir(parents=True)
            (d / f"{cls}_0001.off").write_text(cube_off(header_glued=True))
            (d / f"{cls}_0002.off").write_text(cube_off(header_glued=False))
    refs = list_modelnet(tmp_path)
    assert len(refs) == 8
    assert {r.label for r in refs} == {"chair", "table"}
    assert sum(r.split_hint == "test" for r in refs) == 4
    assert len({r.mesh_id for r in refs}) == 8
    glued = read_off(tmp_path / "chair" / "train" / "chair_0001.off")
    assert len(glued.vertices) == 8 and len(glued.faces) == 12  # 6 quads -> 12 triangles
    for ref in refs:
        mesh, repaired = load_ref(ref)
        _assert_normalised(mesh)
        assert not repaired


def test_shapenet_v1_and_v2_layouts(tmp_path, write_mesh):
    box = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    write_mesh(box, tmp_path / "02691156" / "model_a" / "model.obj")
    write_mesh(box, tmp_path / "02691156" / "model_b" / "models" / "model_normalized.obj")
    write_mesh(box, tmp_path / "03001627" / "model_c" / "model.obj")
    (tmp_path / "03001627" / "no_mesh_here").mkdir()
    refs = list_shapenet(tmp_path)
    assert sorted(r.label for r in refs) == ["02691156", "02691156", "03001627"]
    for ref in refs:
        mesh, _ = load_ref(ref)
        _assert_normalised(mesh)
        assert sorted(mesh.bounds[1] - mesh.bounds[0]) == pytest.approx([0.25, 0.5, 1.0])


def test_mixed_folder_recursive(tmp_path, write_mesh):
    sphere = trimesh.creation.icosphere(subdivisions=2)
    for suffix in ("obj", "stl", "ply", "glb"):
        write_mesh(sphere, tmp_path / "deep" / "er" / f"shape.{suffix}")
    (tmp_path / "cube.off").write_text(cube_off(header_glued=True))
    (tmp_path / "notes.txt").write_text("not a mesh")
    refs = list_folder(tmp_path)
    assert sorted(r.path.rsplit(".", 1)[1] for r in refs) == ["glb", "obj", "off", "ply", "stl"]
    for ref in refs:
        mesh, _ = load_ref(ref)
        _assert_normalised(mesh)


def test_procedural_is_seeded_reproducible_and_watertight():
    a, b = generate(7, 3), generate(7, 3)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    assert not np.array_equal(generate(7, 4).vertices[:10], a.vertices[:10])
    assert not np.array_equal(generate(8, 3).vertices[:10], a.vertices[:10])
    for i in range(15):
        mesh, repaired = load_ref(MeshRef(f"p{i}", "procedural", index=i, seed=1))
        _assert_normalised(mesh)
        assert mesh.volume > 0
        assert not repaired


def test_corrupt_files_are_rejected_with_a_reason(tmp_path):
    (tmp_path / "bad.off").write_text("OFF\n8 12 0\n0 0 0\n1 1\n")
    (tmp_path / "bad.obj").write_text("this is not an obj\n")
    truncated_ply = b"ply\nformat binary_little_endian 1.0\nelement vertex 99\nend_header\n\x00"
    (tmp_path / "bad.ply").write_bytes(truncated_ply)
    (tmp_path / "empty.stl").write_bytes(b"")
    for ref in list_folder(tmp_path):
        with pytest.raises(MeshRejectedError) as info:
            load_ref(ref)
        assert str(info.value)


def test_non_watertight_mesh_repaired_or_rejected(tmp_path, write_mesh):
    box = trimesh.creation.box()
    holed = trimesh.Trimesh(box.vertices, box.faces[1:], process=False)  # one triangle missing: fillable
    write_mesh(holed, tmp_path / "holed.obj")
    tube = trimesh.creation.cylinder(radius=0.3, height=1.0, sections=24)
    keep = np.abs(tube.triangles_center[:, 2]) < 0.49  # drop both caps: two 24-edge holes
    write_mesh(trimesh.Trimesh(tube.vertices, tube.faces[keep], process=False), tmp_path / "tube.obj")
    refs = {r.path.rsplit("/", 1)[1]: r for r in list_folder(tmp_path)}
    mesh, repaired = load_ref(refs["holed.obj"])
    assert repaired
    _assert_normalised(mesh)
    with pytest.raises(MeshRejectedError, match="not watertight"):
        load_ref(refs["tube.obj"])


def test_list_source_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown source"):
        list_source("nope:/x", 1, 0)
    with pytest.raises(ValueError, match="does not exist"):
        list_source(f"folder:{tmp_path / 'missing'}", 1, 0)
    with pytest.raises(ValueError, match="no meshes"):
        list_source(f"folder:{tmp_path}", 1, 0)
    assert len(list_source("procedural", 5, 0)) == 5
    singles = list_source("procedural:1", 6, 0)
    assert all(r.parts == 1 for r in singles)
    assert len({r.mesh_id for r in singles} & {r.mesh_id for r in list_source("procedural", 6, 0)}) == 0
    with pytest.raises(ValueError, match="at most 3 parts"):
        list_source("procedural:9", 1, 0)
