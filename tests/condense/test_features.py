"""What condensation clusters in volumes: embeddings joined with intensities and physical positions."""

from __future__ import annotations

import numpy as np
import pytest

from CUTSSegmentationLib.condense.condensation import CondensationConfig
from CUTSSegmentationLib.condense.features import JoinedFeatures, condensation_features
from CUTSSegmentationLib.core.imagedata import Geometry, ImageData
from CUTSSegmentationLib.core.working_grid import block_mean


def _volume(shape_zyx=(4, 6, 8), spacing_xyz=(0.5, 0.5, 6.5)) -> tuple[np.ndarray, ImageData]:
    rng = np.random.default_rng(1)
    n = int(np.prod(shape_zyx))
    image = ImageData(rng.normal(size=(*shape_zyx, 1)).astype(np.float32), Geometry(spacing=spacing_xyz))
    return rng.normal(size=(n, 5)).astype(np.float16), image


def test_position_columns_are_millimetres_around_the_grid_centre() -> None:
    embeddings, image = _volume()
    feats = JoinedFeatures(embeddings, image, weight=1.0, position_weight=1.0)  # the image's own spacing
    rows = feats[np.arange(feats.shape[0])]
    assert feats.shape == (4 * 6 * 8, 5 + 1 + 3) and rows.shape == feats.shape
    position = rows[:, -3:]
    np.testing.assert_allclose(position.mean(0), 0.0, atol=1e-5)
    # One voxel step along z (6.5 mm) moves the position 13 times as far as one step along x (0.5 mm).
    step_z = position[6 * 8] - position[0]
    step_x = position[1] - position[0]
    assert step_z[1:].tolist() == [0.0, 0.0] and step_x[:2].tolist() == [0.0, 0.0]
    assert step_z[0] == pytest.approx(13.0 * step_x[2], rel=1e-5)


def test_position_spread_follows_the_weight_and_rows_match_in_any_order() -> None:
    embeddings, image = _volume()
    one = JoinedFeatures(embeddings, image, weight=1.0, position_weight=1.0)
    two = JoinedFeatures(embeddings, image, weight=1.0, position_weight=2.0)
    all_rows = np.arange(one.shape[0])
    spread_one = np.sqrt((one[all_rows][:, -3:] ** 2).sum(1).mean())
    spread_two = np.sqrt((two[all_rows][:, -3:] ** 2).sum(1).mean())
    assert spread_two == pytest.approx(2.0 * spread_one, rel=1e-5)
    emb = embeddings.astype(np.float32)
    emb_spread = np.sqrt(((emb - emb.mean(0)) ** 2).sum(1).mean())
    assert spread_one == pytest.approx(emb_spread, rel=0.05)  # the whole volume is the statistics' sample
    np.testing.assert_array_equal(one[5:9], one[np.array([5, 6, 7, 8])])
    for rows in (slice(None), slice(180, None), slice(3, 40, 7), slice(-9, -2), slice(190, 400)):  # as numpy's
        np.testing.assert_array_equal(one[rows], one[np.arange(one.shape[0])[rows]], err_msg=str(rows))


def test_two_dimensional_images_keep_their_embeddings_alone() -> None:
    """The retina benchmark's setting: no intensity or position columns unless asked for."""
    config = CondensationConfig().resolved(is_volume=False)
    assert config.intensity_weight == 0.0 and config.position_weight == 0.0
    embeddings, image = _volume((1, 6, 8))
    assert condensation_features(embeddings, image, 0.0, position_weight=0.0) is embeddings
    volume = CondensationConfig().resolved(is_volume=True)
    assert volume.intensity_weight > 0 and volume.position_weight > 0


def test_a_coarser_working_grid_carries_its_own_spacing_into_the_positions() -> None:
    """Positions on a 2 x 2 block-averaged grid step twice as far in-plane as on the image's own grid."""
    embeddings, image = _volume(shape_zyx=(2, 6, 8))
    coarse = block_mean(image, 2)
    assert coarse.geometry.spacing == (1.0, 1.0, 6.5)
    n = int(np.prod(coarse.array.shape[:3]))
    feats = JoinedFeatures(embeddings[:n], coarse, weight=1.0, position_weight=1.0)
    rows = feats[np.arange(n)]
    step_z = rows[3 * 4, -3] - rows[0, -3]
    step_x = rows[1, -1] - rows[0, -1]
    assert step_z == pytest.approx(6.5 * step_x, rel=1e-5)
