import json
import math

import numpy as np
import pytest

from renderer.camera import OrbitCamera, box_half_extents, fit_distance, world_to_field


def test_dict_and_json_round_trip():
    cam = OrbitCamera(azimuth=123.5, polar=33.25, distance=3.75, target=(0.1, -0.2, 0.3), fov=0.0)
    assert OrbitCamera.from_dict(cam.to_dict()) == cam
    text = cam.to_json()
    assert json.loads(text)["target"] == [0.1, -0.2, 0.3]
    assert OrbitCamera.from_json(text) == cam
    assert OrbitCamera.from_dict({}) == OrbitCamera()


def test_invalid_parameters_are_rejected():
    with pytest.raises(ValueError, match="unknown camera keys"):
        OrbitCamera.from_dict({"azimuth": 1.0, "zoom": 2.0})
    with pytest.raises(ValueError, match="distance"):
        OrbitCamera(distance=0.0)
    with pytest.raises(ValueError, match="fov"):
        OrbitCamera(fov=-5)


def test_eye_convention_front_and_top_views():
    front = OrbitCamera(azimuth=0, polar=90, distance=2)
    np.testing.assert_allclose(front.eye(), [0, -2, 0], atol=1e-12)
    right, up, fwd = front.basis()
    np.testing.assert_allclose(right, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(up, [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(fwd, [0, 1, 0], atol=1e-12)
    top = OrbitCamera(azimuth=0, polar=0, distance=2)
    np.testing.assert_allclose(top.eye(), [0, 0, 2], atol=1e-12)
    np.testing.assert_allclose(top.basis()[1], [0, 1, 0], atol=1e-12)  # y up on screen when looking down
    side = OrbitCamera(azimuth=90, polar=90, distance=2)
    np.testing.assert_allclose(side.eye(), [2, 0, 0], atol=1e-12)


@pytest.mark.parametrize("fov", [0.0, 30.0, 60.0])
def test_rays_project_back_to_their_pixel_centres(fov):
    cam = OrbitCamera(azimuth=40, polar=70, distance=4, target=(0.2, 0.0, -0.1), fov=fov)
    w, h = 40, 24
    xs = np.array([0, 13, 39, 20])
    ys = np.array([0, 7, 23, 12])
    o, d = cam.rays(w, h, xs, ys)
    pts = o + 3.0 * d  # points along the rays
    clip = cam.projection_matrix(w, h) @ cam.view_matrix() @ np.c_[pts, np.ones(len(pts))].T
    ndc = clip[:2] / clip[3]
    px = (ndc[0] + 1) / 2 * w - 0.5
    py = (1 - ndc[1]) / 2 * h - 0.5
    np.testing.assert_allclose(px, xs, atol=1e-9)
    np.testing.assert_allclose(py, ys, atol=1e-9)


def test_box_is_the_physical_extent_with_longest_side_two():
    half = box_half_extents((16, 32, 64), spacing=(4.0, 1.0, 1.0))  # z 64, y 32, x 64 units
    np.testing.assert_allclose(half, [1.0, 0.5, 1.0])
    # voxel centres of the first/last voxel map to -1/+1 in field coordinates
    p = world_to_field(np.array([[-1 + 1 / 64, -0.5 + 0.5 / 32, 1 - 1 / 16]]), half, (16, 32, 64))
    np.testing.assert_allclose(p, [[-1, -1, 1]], atol=1e-12)


def test_fit_distance_shows_the_whole_box():
    half = np.array([1.0, 1.0, 1.0])
    d = fit_distance(half, fov=45)
    cam = OrbitCamera(azimuth=17, polar=63, distance=d, fov=45)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    clip = cam.projection_matrix(100, 100) @ cam.view_matrix() @ np.c_[corners, np.ones(8)].T
    assert np.all(np.abs(clip[:2] / clip[3]) < 1.0)
    assert math.isclose(OrbitCamera(fov=0).half_extent_at_target(), 5.0 * math.tan(math.radians(22.5)))


def test_interaction_helpers():
    cam = OrbitCamera(azimuth=350, polar=5)
    assert cam.orbited(20, -10).azimuth == pytest.approx(10) and cam.orbited(20, -10).polar == 0
    assert cam.zoomed(0.5).distance == pytest.approx(cam.distance / 2)
    moved = OrbitCamera(azimuth=0, polar=90).panned(1.0, 0.0)
    assert moved.target[0] > 0 and abs(moved.target[1]) < 1e-12 and abs(moved.target[2]) < 1e-12


def test_axis_views_look_along_their_axis_and_keep_the_zoom():
    cam = OrbitCamera(azimuth=17, polar=33, distance=3.5, target=(0.2, -0.1, 0.3), fov=30)
    for name, direction in (("+x", [1, 0, 0]), ("-x", [-1, 0, 0]), ("+y", [0, 1, 0]), ("-y", [0, -1, 0]),
                            ("+z", [0, 0, 1]), ("-z", [0, 0, -1])):
        view = cam.looking_along(name)
        right, up, forward = view.basis()
        np.testing.assert_allclose(forward, direction, atol=1e-12)
        assert view.target == (0.0, 0.0, 0.0) and view.distance == 3.5 and view.fov == 30
        if name[1] in "xy":
            np.testing.assert_allclose(up, [0, 0, 1], atol=1e-12)  # z stays up for side views
        np.testing.assert_allclose(np.cross(right, up), -forward, atol=1e-12)  # right-handed screen
    with pytest.raises(ValueError, match="view direction"):
        cam.looking_along("x")


def test_texture_fit_decisions():
    from renderer.gl_caps import GLCaps, fit_to_texture

    assert not fit_to_texture((64, 64, 64)).downsampled
    by_size = fit_to_texture((600, 100, 100), GLCaps(max_3d_texture_size=256))
    assert by_size.factor == 3 and by_size.shape == (200, 33, 33) and "GL_MAX_3D_TEXTURE_SIZE 256" in by_size.notice()
    by_budget = fit_to_texture((128, 128, 128), budget_bytes=2 * 1024**2)
    assert by_budget.factor == 2 and "texture budget 2 MiB" in by_budget.notice()


def test_slice_outline_spans_the_box_at_the_plane():
    from renderer.overlays import slice_outline

    half = box_half_extents((16, 32, 64))  # x 1, y 0.5, z 0.25
    out = slice_outline(half, 0, 0.75)  # the z plane three quarters up
    assert out.shape == (5, 3) and np.array_equal(out[0], out[-1])  # closed
    np.testing.assert_allclose(out[:, 2], 0.25 * 0.5)
    assert {tuple(p) for p in out[:4, :2]} == {(-1, -0.5), (1, -0.5), (1, 0.5), (-1, 0.5)}
    np.testing.assert_allclose(slice_outline(half, 2, 0.0)[:, 0], -1.0)  # x plane at the low edge
    with pytest.raises(ValueError, match="slice axis"):
        slice_outline(half, 3, 0.5)


def test_box_edges_are_the_twelve_edges_of_the_region():
    from renderer.overlays import box_edges

    half = box_half_extents((16, 32, 64))  # x 1, y 0.5, z 0.25
    edges = box_edges(half, (0.25, 0.0, 0.5), (0.75, 0.5, 1.0)).reshape(12, 2, 3)
    lo, hi = np.array([0.0, -0.5, -0.125]), np.array([1.0, 0.0, 0.125])  # (x, y, z) of the box corners
    assert np.all((edges >= lo - 1e-12) & (edges <= hi + 1e-12))
    steps = np.abs(edges[:, 1] - edges[:, 0])
    assert np.all((steps > 1e-12).sum(axis=1) == 1)  # each edge runs along one axis
    np.testing.assert_allclose(np.sort(steps.max(axis=1)), np.repeat(np.sort(hi - lo), 4))
