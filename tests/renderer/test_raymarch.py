import numpy as np
import pytest
import torch

from core.demo import smoke_plume
from core.volume import Volume
from renderer.camera import OrbitCamera
from renderer.fields import GaussianBlobField, VolumeField, bake_field, grid_points
from renderer.raymarch import FieldRenderer, MarchSettings, render_field
from renderer.transfer import TransferFunction
from tests.renderer.helpers import block_columns_volume, block_interior_expectation, top_down_camera


@pytest.fixture(scope="module")
def plume() -> Volume:
    return Volume.from_array(smoke_plume(32, seed=3), name="plume32")


def test_volume_field_interpolates_at_voxel_centres(rng):
    data = rng.random((2 * 3 + 1, 5, 4)).astype(np.float32)
    vf = VolumeField(Volume.from_array(data), device="cpu")
    vals = vf.query(torch.from_numpy(grid_points(data.shape))).numpy()
    np.testing.assert_allclose(vals[:, 0], data.ravel(), atol=1e-6)
    mid = vf.query(torch.tensor([[-1.0, -1.0, -1.0 + 1.0 / 6.0]])).item()  # halfway between z=0 and z=1
    assert mid == pytest.approx(0.5 * (data[0, 0, 0] + data[1, 0, 0]), abs=1e-6)


def test_top_down_mip_equals_numpy_max_projection():
    vol, peak = block_columns_volume(32)
    size = 64
    tf = TransferFunction.preset("grayscale", (0.0, 1.0))
    img = FieldRenderer(vol, device="cpu").render(top_down_camera(), tf, (size, size),
                                                  MarchSettings(method="mip", spp=128, stratified=False))
    expected, mask = block_interior_expectation(peak, 32, size)
    # grayscale LUT of 1024 entries + uint8 rounding: at most 1 level of 255
    diff = np.abs(img[..., 0].astype(float) - expected * 255.0)
    assert diff[mask].max() <= 1.0
    # and against numpy's projection of the raw volume (max over z, rows flipped to image order)
    proj = vol.data[0].max(axis=0)[::-1]
    up = np.repeat(np.repeat(proj, 2, axis=0), 2, axis=1)
    assert np.abs(img[..., 0] / 255.0 - up)[mask].max() <= 1.0 / 255.0


def test_zero_opacity_renders_only_background(plume):
    tf = TransferFunction.preset("viridis", plume.value_range()).with_constant_opacity(0.0)
    bg = (0.2, 0.4, 0.6)
    r = FieldRenderer(plume, device="cpu")
    for skip in (True, False):
        img = r.render(OrbitCamera(), tf, (48, 40), MarchSettings(background=bg, skip_empty=skip))
        assert img.shape == (40, 48, 4)
        assert np.all(img[..., :3] == np.round(np.array(bg) * 255).astype(np.uint8))


def test_skipping_and_early_termination_keep_the_image(plume):
    tf = TransferFunction.preset("plume", plume.value_range())
    r = FieldRenderer(plume, device="cpu")
    cam = OrbitCamera(azimuth=70, polar=75)
    fast = r.render(cam, tf, (64, 64), MarchSettings(spp=128))
    fast_stats = r.last_stats
    naive = r.render(cam, tf, (64, 64), MarchSettings(spp=128, skip_empty=False, early_termination=None))
    naive_stats = r.last_stats
    assert fast_stats.samples_queried < 0.6 * naive_stats.samples_queried
    diff = np.abs(fast[..., :3].astype(int) - naive[..., :3].astype(int))
    # early termination leaves at most 1 % of the light: about 2.5 levels of 255 per pixel at worst
    assert diff.max() <= 3 and diff.mean() < 0.2
    assert naive[..., :3].max() > 100  # the plume is actually drawn


def test_mip_skipping_is_exact_and_iso_finds_the_surface(plume):
    r = FieldRenderer(plume, device="cpu")
    tf = TransferFunction.preset("viridis", plume.value_range())
    a = r.render(OrbitCamera(), tf, (48, 48), MarchSettings(method="mip", spp=96))
    b = r.render(OrbitCamera(), tf, (48, 48), MarchSettings(method="mip", spp=96, skip_empty=False))
    np.testing.assert_array_equal(a, b)
    iso = r.render(OrbitCamera(), tf, (48, 48), MarchSettings(method="iso", threshold=0.4, spp=96))
    lit = iso[..., :3].max(-1) > 0
    mip_above = a[..., :3].astype(int)
    assert 0.01 < lit.mean() < 0.6
    # every lit iso pixel looks through something brighter than the threshold in the MIP
    thr_colour = tf.colors(tf.normalise(np.array([0.4])))[0] * 255
    assert np.all(np.abs(mip_above[lit] - thr_colour).sum(-1) >= 0) and lit.sum() > 20


def test_progressive_passes_end_in_the_full_image(plume):
    r = FieldRenderer(plume, device="cpu")
    tf = TransferFunction.preset("plume", plume.value_range())
    st = MarchSettings(spp=96)
    full = r.render(OrbitCamera(), tf, (40, 36), st)
    passes = list(r.progressive(OrbitCamera(), tf, (40, 36), st, stride=4))
    assert len(passes) == 3 and all(p.shape == full.shape for p in passes)
    np.testing.assert_array_equal(passes[-1], full)
    # the coarse pass already has the right pixels on its lattice
    np.testing.assert_array_equal(passes[0][::4, ::4], full[::4, ::4])
    seen = []
    render_field(plume, OrbitCamera(), tf, (40, 36), st, device="cpu", progress=lambda im, i: seen.append(i))
    assert seen == [0, 1, 2]


def test_analytic_field_and_bake_agree():
    field = GaussianBlobField.random(4, seed=2, source_shape=(24, 24, 24))
    baked = bake_field(field)
    assert baked.shape == (24, 24, 24)
    tf = TransferFunction.preset("inferno", baked.value_range())
    cam = OrbitCamera(azimuth=10, polar=80)
    st = MarchSettings(spp=96, stratified=False)
    direct = FieldRenderer(field, device="cpu").render(cam, tf, (48, 48), st)
    via_grid = FieldRenderer(baked, device="cpu").render(cam, tf, (48, 48), st)
    assert direct[..., :3].mean() > 2 and direct[..., :3].max() > 100
    assert np.abs(direct[..., :3].astype(int) - via_grid[..., :3].astype(int)).mean() < 2.0


def test_three_channel_fields_render_their_magnitude(rng):
    vec = rng.standard_normal((3, 12, 12, 12)).astype(np.float32)
    v3 = Volume.from_array(vec)
    mag = v3.magnitude()
    tf = TransferFunction.preset("viridis", mag.value_range())
    st = MarchSettings(method="mip", spp=64, stratified=False)
    a = FieldRenderer(v3, device="cpu").render(OrbitCamera(), tf, (32, 32), st)
    b = FieldRenderer(mag, device="cpu").render(OrbitCamera(), tf, (32, 32), st)
    # interpolating components then taking the norm differs slightly from interpolating the norm
    assert np.abs(a[..., :3].astype(int) - b[..., :3].astype(int)).mean() < 12
    assert a[..., :3].mean() > 10


def test_bad_settings_are_user_errors():
    from core.errors import VolsightError

    with pytest.raises(VolsightError, match="unknown rendering method"):
        MarchSettings(method="xray")
    with pytest.raises(VolsightError, match="spp"):
        MarchSettings(spp=1)
    with pytest.raises(VolsightError, match="expected a Volume or a field"):
        FieldRenderer(object())


def test_camera_inside_the_box_and_rays_that_miss(plume):
    r = FieldRenderer(plume, device="cpu")
    tf = TransferFunction.preset("viridis", plume.value_range())
    inside = r.render(OrbitCamera(distance=0.3, fov=90), tf, (24, 24), MarchSettings(method="mip", spp=64))
    assert inside[..., :3].max() > 50  # rays start at the eye, not behind it
    away = OrbitCamera(distance=5.0, target=(10.0, 0.0, 0.0))  # the box is out of view
    empty = r.render(away, tf, (24, 24), MarchSettings(method="mip", spp=64, background=(0.0, 1.0, 0.0)))
    assert np.all(empty[..., :3] == [0, 255, 0])
    assert r.last_stats.samples_queried == 0


def test_min_opacity_trades_a_bounded_error_for_speed(plume):
    # a 0 → 1 ramp: every nonzero value is a little opaque, so exact skipping has little to skip
    tf = TransferFunction.preset("coolwarm", plume.value_range()).with_opacity([[0.0, 0.0], [1.0, 1.0]])
    r = FieldRenderer(plume, device="cpu")
    cam = OrbitCamera(azimuth=20, polar=80)
    exact = r.render(cam, tf, (48, 48), MarchSettings(spp=128))
    n_exact = r.last_stats.samples_queried
    approx = r.render(cam, tf, (48, 48), MarchSettings(spp=128, grid_margin=0.0, min_opacity=1e-3))
    assert r.last_stats.samples_queried < n_exact
    # skipped samples carry at most 0.001 opacity per voxel; a ray crosses < 60 voxels here
    assert np.abs(exact[..., :3].astype(int) - approx[..., :3].astype(int)).max() <= 0.06 * 255


def test_tiles_compiled_compositing_and_reduced_precision_keep_the_image(plume, monkeypatch):
    import renderer.raymarch as rm
    from models.apmgsrn import APMGSRN
    from renderer import composite_cpu

    tf = TransferFunction.preset("coolwarm", plume.value_range()).with_opacity([[0, 0], [1, 1]])
    r = FieldRenderer(plume, device="cpu")
    cam = OrbitCamera(azimuth=30, polar=70)
    st = MarchSettings(spp=96)
    tiled = r.render(cam, tf, (64, 48), st)
    tiled_stats = (r.last_stats.samples_marched, r.last_stats.samples_queried)
    monkeypatch.setattr(rm, "_MIN_TILE_RAYS", 10**9)  # one pass over all rays
    whole = r.render(cam, tf, (64, 48), st)
    assert (r.last_stats.samples_marched, r.last_stats.samples_queried) == tiled_stats
    assert np.array_equal(tiled, whole)  # every ray is marched on its own: tiles change nothing
    if composite_cpu.available():
        torch_path = r.render(cam, tf, (64, 48), st.evolve(fast_composite=False))
        assert np.abs(torch_path.astype(int) - whole.astype(int)).max() <= 1  # float32 rounding only
        assert np.abs(torch_path.astype(int) - whole.astype(int)).mean() < 0.01
    # a neural field: the bfloat16 decoder stays within an 8-bit level or two of float32
    field = APMGSRN({"n_grids": 4, "n_features": 2, "grid_shape": [8, 8, 8], "width": 16}, channels=1,
                    value_range=(0.0, 1.0), source_shape=(16, 16, 16), name="t").eval()
    with torch.no_grad():
        field.feature_grids.uniform_(0.0, 1.0, generator=torch.Generator().manual_seed(2))
    rf = FieldRenderer(field, device="cpu")
    tf_field = TransferFunction.preset("coolwarm", (0.0, 1.0)).with_opacity([[0, 0], [1, 0.3]])
    exact = rf.render(cam, tf_field, (48, 48), st.evolve(reduced_precision=False))
    reduced = rf.render(cam, tf_field, (48, 48), st)
    assert exact[..., :3].std() > 5  # something is drawn
    diff = np.abs(exact.astype(int) - reduced.astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.5
