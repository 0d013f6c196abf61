"""The sim's URDF reader and its converted-mesh cache (small synthetic inputs, no rendering)."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core.errors import ConfigError

TWO_FINGERS = """<robot name="pincer">
  <link name="base"><collision><geometry><box size="0.1 0.1 0.1"/></geometry></collision></link>
  <link name="left">
    <inertial><mass value="0.1"/><inertia ixx="1e-4" iyy="1e-4" izz="1e-4" ixy="0" ixz="0" iyz="0"/></inertial>
    <visual><geometry><mesh filename="{mesh}"/></geometry></visual>
    <collision><geometry><box size="0.02 0.02 0.05"/></geometry></collision>
  </link>
  <link name="right">
    <inertial><mass value="0.1"/><inertia ixx="1e-4" iyy="1e-4" izz="1e-4" ixy="0" ixz="0" iyz="0"/></inertial>
    <collision><geometry><box size="0.02 0.02 0.05"/></geometry></collision>
  </link>
  <joint name="left_joint" type="prismatic"><parent link="base"/><child link="left"/>
    <axis xyz="0 1 0"/><limit lower="0" upper="0.04" effort="20" velocity="0.2"/></joint>
  <joint name="right_joint" type="prismatic"><parent link="base"/><child link="right"/>
    <axis xyz="0 1 0"/><limit lower="-0.08" upper="0.04" effort="20" velocity="0.2"/>
    <mimic joint="left_joint" multiplier="-2.0" offset="0.01"/></joint>
</robot>
"""


@pytest.fixture
def pincer(tmp_path):
    import trimesh

    pkg = tmp_path / "share" / "pincer_description" / "meshes"
    pkg.mkdir(parents=True)
    trimesh.creation.box(extents=(0.02, 0.02, 0.05)).export(pkg / "finger.stl")
    urdf = tmp_path / "pincer.urdf"
    urdf.write_text(TWO_FINGERS.format(mesh="package://pincer_description/meshes/finger.stl"))
    return urdf, tmp_path / "share"


def test_package_meshes_resolve_like_the_robot_model(pincer, tmp_path):
    from kinema4d_core.robot import resolve_resource
    from kinema4d_core.simworld.urdf import read_urdf

    urdf, share = pincer
    (mesh_path,) = [g.mesh for g in read_urdf(urdf, (share,)).links["left"].visuals]
    assert mesh_path == resolve_resource("package://pincer_description/meshes/finger.stl", [share], urdf.parent,
                                         field="urdf")
    assert mesh_path.is_file()
    with pytest.raises(ConfigError, match="not found under package dirs") as err:
        read_urdf(urdf, (tmp_path / "elsewhere",))
    assert err.value.field == "urdf"


def test_mimic_multiplier_and_offset_reach_the_mujoco_equality(pincer):
    """The URDF's <mimic multiplier offset> used to be dropped (every mimic joint copied its leader 1:1)."""
    import mujoco

    from kinema4d_core.simworld.scene import _add_robot
    from kinema4d_core.simworld.urdf import read_urdf

    urdf, share = pincer
    parsed = read_urdf(urdf, (share,))
    right = next(j for j in parsed.joints if j.name == "right_joint")
    assert (right.mimic, right.mimic_multiplier, right.mimic_offset) == ("left_joint", -2.0, 0.01)
    spec = mujoco.MjSpec()
    spec.compiler.degree = False
    assert _add_robot(spec, parsed, np.eye(4)) == ["left_joint"]
    model = spec.compile()
    assert model.neq == 1
    np.testing.assert_allclose(model.eq_data[0, :5], [0.01, -2.0, 0.0, 0.0, 0.0])


def test_mesh_cache_off_writes_nothing(pincer, tmp_path, monkeypatch):
    """KINEMA4D_CACHE_DIR=off used to create a folder named 'off' in the working directory."""
    from kinema4d_core.simworld.meshes import cache_dir, load_material_meshes

    _, share = pincer
    mesh = share / "pincer_description" / "meshes" / "finger.stl"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("KINEMA4D_CACHE_DIR", "off")
    assert cache_dir() is None
    parts = load_material_meshes(mesh)
    assert len(parts) == 1 and parts[0].faces.shape == (12, 3)
    assert not any(work.iterdir())

    monkeypatch.setenv("KINEMA4D_CACHE_DIR", str(tmp_path / "cache"))
    again = load_material_meshes(mesh)
    assert len(list((tmp_path / "cache" / "mujoco_panda").glob("finger-*.npz"))) == 1
    assert np.array_equal(again[0].vertices, parts[0].vertices)
