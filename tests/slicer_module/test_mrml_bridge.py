"""The MRML bridge against the real MRML scene of PyPI slicer-core (no Slicer application, no Qt).

Geometry is deliberately oblique and anisotropic with a nonzero origin, so axis-order (numpy z,y,x vs index
x,y,z) and LPS/RAS mistakes fail loudly. Hierarchies are built by hand (atoms in blocks, random merges), not by
the engine, so these tests check the bridge alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import slicer  # PyPI slicer-core, a test requirement: missing it fails, never skips
import vtk  # slicer-core pins its own vtk
from CUTSSegmentationJobs.engine import Geometry, Hierarchy, ImageData, InputError
from CUTSSegmentationMRML import (
    LABEL_TAG,
    export_segmentation,
    find_hierarchy_nodes,
    image_to_volume_node,
    label_at_seed,
    label_colors,
    load_hierarchy_from_scene,
    present_labels,
    push_level_to_segmentation,
    read_scene_bundle,
    remove_hierarchy_from_scene,
    seed_from_markup,
    segmentation_to_label_map,
    store_hierarchy_in_scene,
    volume_node_to_image,
    write_scene_bundle,
)

SHAPE = (
    6,
    10,
    12,
)  # (Z, Y, X): all three different, so a swapped axis cannot go unnoticed


def oblique_geometry() -> Geometry:
    """Rotation about an oblique axis, anisotropic spacing, nonzero origin (ITK/LPS)."""
    axis = np.array([1.0, 2.0, 3.0]) / np.linalg.norm([1.0, 2.0, 3.0])
    angle = 0.7
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    return Geometry(
        spacing=(0.8, 0.9, 2.5),
        origin=(12.5, -30.25, 47.0),
        direction=tuple(rotation.ravel()),
    )


def make_image(shape=SHAPE, channels=1, dtype="int16", seed=0) -> ImageData:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 200, size=shape + (channels,)).astype(np.float32)
    return ImageData(
        array=array,
        geometry=oblique_geometry(),
        is_2d=shape[0] == 1,
        source_dtype=dtype,
    )


def block_labels(shape=SHAPE, n=5, seed=1, offset=0) -> np.ndarray:
    """A label map with n non-consecutive labels in 2x2x3 blocks (every voxel labelled)."""
    rng = np.random.default_rng(seed)
    values = np.sort(rng.choice(np.arange(1, 3 * n + 1), size=n, replace=False)) + offset
    blocks = rng.integers(0, n, size=tuple(-(-s // b) for s, b in zip(shape, (2, 2, 3))))
    blocks.ravel()[:n] = np.arange(n)  # every label present
    full = blocks.repeat(2, 0).repeat(2, 1).repeat(3, 2)[: shape[0], : shape[1], : shape[2]]
    return values[full].astype(np.uint16)


def make_hierarchy(shape=SHAPE, is_2d=False, seed=3, with_persistent=True) -> Hierarchy:
    """Atoms in 2x2x2 blocks, one random merge per step; levels are merge_tree[step][atom_map] + 1."""
    rng = np.random.default_rng(seed)
    grid = (1,) + shape if len(shape) == 2 else shape
    atoms = np.arange(np.prod([-(-s // 2) for s in grid])).reshape([-(-s // 2) for s in grid])
    atom_map = atoms.repeat(2, 0).repeat(2, 1).repeat(2, 2)[: grid[0], : grid[1], : grid[2]].reshape(shape)
    atom_map = atom_map.astype(np.int64)
    m = int(atoms.size)
    tree = [np.arange(m)]
    while len(np.unique(tree[-1])) > 2:
        current = tree[-1].copy()
        a, b = rng.choice(np.unique(current), size=2, replace=False)
        current[current == b] = a  # the merged cluster keeps the id of one of its atoms
        tree.append(current)
    merge_tree = np.stack(tree).astype(np.int32)
    steps = np.array([0, len(tree) // 3, 2 * len(tree) // 3, len(tree) - 1])
    levels = np.stack([(merge_tree[s][atom_map] + 1).astype(np.uint16) for s in steps])
    n_clusters = np.array([len(np.unique(merge_tree[s])) for s in steps])
    persistent = levels[1].copy() if with_persistent else None
    if persistent is not None:
        persistent[levels[1] == levels[1].max()] = 0
    return Hierarchy(
        levels=levels,
        n_clusters=n_clusters,
        level_steps=steps,
        atom_map=atom_map,
        merge_tree=merge_tree,
        persistent=persistent,
        geometry=oblique_geometry(),
        is_2d=is_2d,
        info={"model": "synthetic", "sigma": 0.5},
    )


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


def ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def segment_summary(segmentation_node) -> list[tuple]:
    seg = segmentation_node.GetSegmentation()
    return [
        (
            seg.GetNthSegmentID(i),
            seg.GetNthSegment(i).GetName(),
            tuple(seg.GetNthSegment(i).GetColor()),
        )
        for i in range(seg.GetNumberOfSegments())
    ]


# --------------------------------------------------------------------------- volumes
def test_volume_round_trip_keeps_voxels_and_geometry(scene):
    image = make_image()
    node = image_to_volume_node(scene, image, "input")
    # Slicer's IJK->RAS must put voxel (x, y, z) where the ITK geometry says, with LPS->RAS flipped.
    index = np.array([3.0, 7.0, 2.0])
    ras = ijk_to_ras(node) @ np.append(index, 1.0)
    lps = image.geometry.index_to_lps(index)
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-9)

    back = volume_node_to_image(node)
    assert back.array.shape == SHAPE + (1,) and back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, image.array)
    assert not back.is_2d and back.source_dtype == "int16" and back.source == "input"
    np.testing.assert_allclose(back.geometry.spacing, image.geometry.spacing, atol=1e-9)
    np.testing.assert_allclose(back.geometry.origin, image.geometry.origin, atol=1e-9)
    np.testing.assert_allclose(back.geometry.direction, image.geometry.direction, atol=1e-9)


def test_single_slice_volume_is_2d_and_rgb_has_three_channels(scene):
    grey = image_to_volume_node(scene, make_image(shape=(1, 10, 12), dtype="uint8"), "png")
    image = volume_node_to_image(grey)
    assert image.is_2d and image.spatial_shape == (10, 12) and image.source_dtype == "uint8"

    rgb_image = make_image(shape=(1, 10, 12), channels=3, dtype="uint8")
    rgb = image_to_volume_node(scene, rgb_image, "rgb")
    assert rgb.IsA("vtkMRMLVectorVolumeNode")
    back = volume_node_to_image(rgb)
    assert back.channels == 3 and back.is_2d
    np.testing.assert_array_equal(back.array, rgb_image.array)


def test_volume_without_voxels_is_an_input_error(scene):
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError):
        volume_node_to_image(empty)


# --------------------------------------------------------------------------- segmentations
def test_push_makes_one_segment_per_cluster_and_round_trips_exactly(scene):
    volume = image_to_volume_node(scene, make_image(), "input")
    labels = block_labels(n=7)
    labels[0, 0, :4] = 40000  # above Slicer's signed-short merge range: must still survive
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CUTS output")

    ids = push_level_to_segmentation(labels, segmentation, volume)

    expected = present_labels(labels)
    assert len(expected) == 8
    seg = segmentation.GetSegmentation()
    assert seg.GetNumberOfSegments() == len(expected) == len(ids)
    assert seg.GetNumberOfLayers() == 1  # one shared labelmap, not one volume per segment
    names = [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())]
    assert names == [f"Cluster {v}" for v in expected]
    colours = [tuple(seg.GetNthSegment(i).GetColor()) for i in range(seg.GetNumberOfSegments())]
    assert len(set(colours)) == len(colours)
    tag = vtk.reference("")
    assert seg.GetNthSegment(0).GetTag(LABEL_TAG, tag) and str(tag) == str(expected[0])

    np.testing.assert_array_equal(segmentation_to_label_map(segmentation, volume), labels)

    # Reference geometry is the input volume's: same node reference, same IJK->RAS in the layer.
    assert segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()) is volume
    layer = seg.GetNthSegment(0).GetRepresentation("Binary labelmap")
    matrix = vtk.vtkMatrix4x4()
    layer.GetImageToWorldMatrix(matrix)
    layer_matrix = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    np.testing.assert_allclose(layer_matrix, ijk_to_ras(volume), atol=1e-12)
    assert layer.GetExtent() == volume.GetImageData().GetExtent()


def test_pushing_another_level_replaces_segments_and_leaves_other_nodes_alone(scene):
    volume = image_to_volume_node(scene, make_image(), "input")
    # A user's own segmentation with two segments in separate layers, made before CUTS ran.
    user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my segmentation")
    push_level_to_segmentation(block_labels(n=3, seed=9), user, volume, names=["liver", "lesion", "rest"])
    user.GetSegmentation().SeparateSegmentLabelmap("cuts_" + str(present_labels(block_labels(n=3, seed=9))[1]))
    user_before = segmentation_to_label_map(user, volume)
    summary_before = segment_summary(user)
    mtime_before = user.GetSegmentation().GetMTime()

    output = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CUTS output")
    fine, coarse = block_labels(n=9, seed=2), block_labels(n=3, seed=4, offset=50)
    for labels in (fine, coarse, fine, coarse):
        push_level_to_segmentation(labels, output, volume)
        assert output.GetSegmentation().GetNumberOfSegments() == len(present_labels(labels))
        np.testing.assert_array_equal(segmentation_to_label_map(output, volume), labels)
    ids = [output.GetSegmentation().GetNthSegmentID(i) for i in range(3)]
    assert ids == [f"cuts_{v}" for v in present_labels(coarse)]  # replaced, not appended

    assert segment_summary(user) == summary_before
    assert user.GetSegmentation().GetMTime() == mtime_before
    np.testing.assert_array_equal(segmentation_to_label_map(user, volume), user_before)


def test_push_accepts_2d_label_maps_and_custom_names_colours(scene):
    volume = image_to_volume_node(scene, make_image(shape=(1, 10, 12)), "slice")
    labels = block_labels(shape=(1, 10, 12), n=4)[0]
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    values = present_labels(labels)
    push_level_to_segmentation(
        labels,
        segmentation,
        volume,
        names={int(v): f"structure {i}" for i, v in enumerate(values)},
        colors={int(v): (0.1 * i, 0.2, 0.3) for i, v in enumerate(values)},
    )
    seg = segmentation.GetSegmentation()
    assert [seg.GetNthSegment(i).GetName() for i in range(4)] == [f"structure {i}" for i in range(4)]
    np.testing.assert_allclose(seg.GetNthSegment(2).GetColor(), (0.2, 0.2, 0.3))
    assert segmentation_to_label_map(segmentation, volume).reshape(10, 12).tolist() == labels.tolist()


def test_partial_names_and_colours_fall_back_to_defaults(scene):
    volume = image_to_volume_node(scene, make_image(), "input")
    labels = block_labels(n=3)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    push_level_to_segmentation(labels, segmentation, volume, names=["first"], colors=[(1.0, 0.0, 0.0)])
    seg = segmentation.GetSegmentation()
    values = present_labels(labels)
    names = [seg.GetNthSegment(i).GetName() for i in range(3)]
    assert names == ["first", f"Cluster {values[1]}", f"Cluster {values[2]}"]
    assert seg.GetNthSegment(0).GetColor() == (1.0, 0.0, 0.0)
    assert tuple(seg.GetNthSegment(2).GetColor()) == pytest.approx(label_colors(values)[int(values[2])])


def test_label_map_of_another_shape_is_refused(scene):
    volume = image_to_volume_node(scene, make_image(), "input")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    with pytest.raises(InputError, match="another volume"):
        push_level_to_segmentation(np.ones((6, 12, 10), np.uint16), segmentation, volume)


def test_palette_colours_are_distinct_and_stable_per_label():
    first = label_colors([1, 27, 53, 4])  # 1, 27 and 53 want the same slot of the 26-colour base
    assert len(set(first.values())) == 4
    assert label_colors([1, 4])[4] == first[4]
    assert len(set(label_colors(range(1, 600)).values())) == 599


# --------------------------------------------------------------------------- seeds
def test_seed_markup_gives_the_voxel_and_its_label(scene):
    image = make_image()
    volume = image_to_volume_node(scene, image, "input")
    labels = block_labels(n=6)
    voxel = (7, 3, 4)  # (x, y, z)
    ras = image.geometry.index_to_ras(np.array(voxel) + np.array([0.3, -0.4, 0.2]))  # off-centre, same voxel
    markup = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seed")
    markup.AddControlPoint(vtk.vtkVector3d(*ras))
    assert seed_from_markup(markup, volume) == voxel
    assert label_at_seed(labels, voxel) == labels[4, 3, 7]

    # Move the volume with a parent transform: the same world point is now another voxel.
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 1.5)
    transform.SetMatrixTransformToParent(shift)
    volume.SetAndObserveTransformNodeID(transform.GetID())
    moved = np.asarray(image.geometry.ras_to_index(np.asarray(ras) - [1.5, 0.0, 0.0]))
    assert seed_from_markup(markup, volume) == tuple(int(v) for v in np.floor(moved + 0.5))
    # ... and a markup under the same transform lands on the original voxel again.
    markup.SetAndObserveTransformNodeID(transform.GetID())
    assert seed_from_markup(markup, volume) == voxel

    markup.AddControlPoint(vtk.vtkVector3d(1000.0, 1000.0, 1000.0))
    with pytest.raises(InputError, match="outside"):
        seed_from_markup(markup, volume, point_index=1)
    with pytest.raises(InputError):
        seed_from_markup(markup, volume, point_index=5)


def test_label_at_seed_on_a_2d_map():
    labels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    assert label_at_seed(labels, (2, 1, 0)) == 6
    with pytest.raises(InputError):
        label_at_seed(labels, (4, 0, 0))


# --------------------------------------------------------------------------- export
def test_exported_seg_nrrd_reads_back_with_slicerio(scene, tmp_path):
    import slicerio

    image = make_image()
    volume = image_to_volume_node(scene, image, "input")
    labels = block_labels(n=5)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CUTS output")
    push_level_to_segmentation(labels, segmentation, volume)

    path = export_segmentation(segmentation, tmp_path / "out" / "cuts.seg.nrrd")
    assert path.is_file() and not list(path.parent.glob(".cuts-export-*"))
    seg = slicerio.read_segmentation(str(path))

    values = present_labels(labels)
    assert [s["name"] for s in seg["segments"]] == [f"Cluster {v}" for v in values]
    assert [s["labelValue"] for s in seg["segments"]] == [int(v) for v in values]
    assert [s["tags"][LABEL_TAG] for s in seg["segments"]] == [str(v) for v in values]
    # slicerio gives voxels in NRRD (x, y, z) order and an IJK->LPS matrix.
    np.testing.assert_array_equal(np.transpose(seg["voxels"], (2, 1, 0)), labels)
    lps = np.eye(4)
    lps[:3, :3] = image.geometry.direction_matrix @ np.diag(image.geometry.spacing)
    lps[:3, 3] = image.geometry.origin
    np.testing.assert_allclose(seg["ijkToLPS"], lps, atol=1e-9)

    with pytest.raises(InputError):
        export_segmentation(segmentation, tmp_path / "cuts.nii.gz")


# --------------------------------------------------------------------------- hierarchy in the scene
def assert_same_hierarchy(loaded: Hierarchy, original: Hierarchy) -> None:
    np.testing.assert_array_equal(loaded.levels, original.levels)
    assert loaded.levels.dtype == original.levels.dtype
    np.testing.assert_array_equal(loaded.atom_map, original.atom_map)
    np.testing.assert_array_equal(loaded.merge_tree, original.merge_tree)
    np.testing.assert_array_equal(loaded.n_clusters, original.n_clusters)
    np.testing.assert_array_equal(loaded.level_steps, original.level_steps)
    if original.persistent is None:
        assert loaded.persistent is None
    else:
        np.testing.assert_array_equal(loaded.persistent, original.persistent)
    assert loaded.geometry == original.geometry
    assert loaded.is_2d == original.is_2d
    assert loaded.info == original.info


def test_hierarchy_survives_saving_and_reopening_an_mrb(scene, tmp_path):
    hierarchy = make_hierarchy()
    volume = image_to_volume_node(scene, make_image(), "input")
    volume.AddDefaultStorageNode()
    node = store_hierarchy_in_scene(scene, hierarchy, volume)
    assert node.GetNodeReference("cutsLevels") is None  # levels are rebuilt from the merge tree
    output = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CUTS output")
    push_level_to_segmentation(hierarchy.level(1), output, volume)
    output.AddDefaultStorageNode()

    bundle = write_scene_bundle(scene, tmp_path / "session.mrb")

    reopened = slicer.vtkMRMLScene()
    read_scene_bundle(reopened, bundle, cache_directory=tmp_path / "cache")
    volume2 = reopened.GetFirstNodeByName("input")
    nodes = find_hierarchy_nodes(reopened, volume2)
    assert len(nodes) == 1
    loaded = load_hierarchy_from_scene(nodes[0])
    assert_same_hierarchy(loaded, hierarchy)

    # The slider works on the reopened scene: every level lands voxel-exact on the reopened volume.
    output2 = reopened.GetFirstNodeByName("CUTS output")
    assert output2.GetSegmentation().GetNumberOfSegments() == hierarchy.n_clusters[1]
    for level in range(loaded.n_levels):
        push_level_to_segmentation(loaded.level(level), output2, volume2)
        assert output2.GetSegmentation().GetNumberOfSegments() == hierarchy.n_clusters[level]
        np.testing.assert_array_equal(segmentation_to_label_map(output2, volume2), hierarchy.level(level))
    np.testing.assert_allclose(ijk_to_ras(nodes[0].GetNodeReference("cutsAtomMap")), ijk_to_ras(volume2))

    remove_hierarchy_from_scene(nodes[0])
    assert find_hierarchy_nodes(reopened) == []
    assert reopened.GetFirstNodeByName("input") is volume2


def test_hierarchy_with_own_levels_survives_a_directory_save(scene, tmp_path):
    """Levels that are not merge_tree[step][atom_map]+1 are stored as such; 2D; saved as .mrml + files."""
    hierarchy = make_hierarchy(shape=(10, 12), is_2d=True, with_persistent=False)
    hierarchy.levels = (hierarchy.levels.max() + 1 - hierarchy.levels).astype(np.uint16)  # relabelled
    hierarchy.save(tmp_path / "hierarchy.npz")
    node = store_hierarchy_in_scene(scene, tmp_path / "hierarchy.npz", name="CUTS 2D")
    assert node.GetNodeReference("cutsLevels") is not None
    assert json.loads(node.GetAttribute("CUTS.Shape")) == [10, 12]

    folder = tmp_path / "saved"
    folder.mkdir()
    assert scene.SaveSceneToSlicerDataBundleDirectory(str(folder))
    reopened = slicer.vtkMRMLScene()
    reopened.SetURL(str(next(folder.glob("*.mrml"))))
    assert reopened.Connect()
    loaded = load_hierarchy_from_scene(find_hierarchy_nodes(reopened)[0])
    assert_same_hierarchy(loaded, Hierarchy.load(tmp_path / "hierarchy.npz"))


def test_store_refuses_a_hierarchy_of_another_volume(scene):
    volume = image_to_volume_node(scene, make_image(shape=(6, 10, 11)), "input")
    with pytest.raises(InputError):
        store_hierarchy_in_scene(scene, make_hierarchy(), volume)
    with pytest.raises(InputError):
        load_hierarchy_from_scene(volume)


def test_bridge_uses_no_qt_and_no_scene_global():
    """Same code in Slicer and under slicer-core: no Qt/CTK imports, no slicer.app, no slicer.mrmlScene global."""
    import ast

    package = Path(__file__).resolve().parents[2] / "CUTSSegmentation" / "CUTSSegmentationMRML"
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level else [node.module or ""]  # relative: the package itself
            else:
                names = []
            for name in names:
                root = name.split(".")[0]
                assert root in {
                    "__future__",
                    "collections",
                    "colorsys",
                    "dataclasses",
                    "json",
                    "os",
                    "tempfile",
                    "pathlib",
                    "typing",
                    "numpy",
                    "slicer",
                    "vtk",
                    "CUTSSegmentationJobs",
                }, (source, name)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "slicer":
                assert node.attr not in {"app", "mrmlScene", "modules", "qMRMLUtils"}, (
                    source,
                    node.attr,
                )
