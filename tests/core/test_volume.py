import numpy as np
import pytest

from core import Volume, VolumeError, normalize_pair
from core.demo import DEMO_KINDS, demo_pair, demo_volume


def test_3d_array_becomes_one_channel_float32_readonly(rng):
    v = Volume(rng.integers(0, 255, (4, 5, 6)).astype(np.uint8), name="u8")
    assert v.data.shape == (1, 4, 5, 6) and v.data.dtype == np.float32
    assert v.shape == (4, 5, 6) and v.channels == 1
    with pytest.raises(ValueError):
        v.data[0, 0, 0, 0] = 1.0


def test_input_array_is_not_modified_or_aliased_writable(rng):
    a = rng.standard_normal((1, 3, 3, 3)).astype(np.float32)
    v = Volume(a)
    before = a[0, 0, 0, 0]
    a[0, 0, 0, 0] = 99.0  # the caller may still write its own array; the Volume does not change
    assert a.flags.writeable and v.data[0, 0, 0, 0] == before
    ro = a.copy()
    ro.flags.writeable = False
    assert np.shares_memory(Volume(ro).data, ro)  # read-only input is not copied


@pytest.mark.parametrize(
    "shape, message",
    [((2, 4, 4, 4), "2 channels"), ((4, 4), "expected a 3D array"), ((4, 1, 4), "at least 2 voxels"),
     ((1, 2, 3, 4, 5), "expected a 3D array")],
)
def test_invalid_shapes_say_what_is_wrong(shape, message):
    with pytest.raises(VolumeError, match=message):
        Volume(np.zeros(shape, np.float32), name="bad")


def test_nonfinite_values_rejected_unless_policy_given():
    d = np.ones((3, 3, 3), np.float32)
    d[1, 1, 1] = np.nan
    d[0, 0, 0] = np.inf
    with pytest.raises(VolumeError, match="2 non-finite"):
        Volume(d, name="nan")
    z = Volume(d, nan_policy="zero")
    assert np.isfinite(z.data).all() and z.metadata["nonfinite_replaced"] == 2
    keep = Volume(d, nan_policy="allow")
    assert keep.nan_count() == 2 and keep.value_range() == (1.0, 1.0)
    with pytest.raises(VolumeError, match="nan_policy"):
        Volume(d, nan_policy="ignore")  # type: ignore[arg-type]


def test_non_numeric_and_bad_spacing_rejected():
    with pytest.raises(VolumeError, match="numeric"):
        Volume(np.array([[["a", "b"], ["c", "d"]]] * 2))
    with pytest.raises(VolumeError, match="positive"):
        Volume(np.zeros((2, 2, 2)), spacing=(1, 0, 1))


def test_channel_magnitude_slice_downsample(rng):
    d = rng.standard_normal((3, 8, 6, 4)).astype(np.float32)
    v = Volume(d, name="vec", spacing=(1, 2, 3))
    assert v.channel(1).data.shape == (1, 8, 6, 4)
    np.testing.assert_allclose(v.channel(1).data[0], d[1])
    np.testing.assert_allclose(v.magnitude().data[0], np.linalg.norm(d, axis=0), rtol=1e-6)
    assert v.slice(0, 2).shape == (3, 6, 4)
    np.testing.assert_array_equal(v.slice(2), d[:, :, :, 2])
    ds = v.downsample(2)
    assert ds.shape == (4, 3, 2) and ds.spacing == (2.0, 4.0, 6.0)
    np.testing.assert_allclose(ds.data[:, 0, 0, 0], d[:, :2, :2, :2].mean(axis=(1, 2, 3)), rtol=1e-5)
    with pytest.raises(VolumeError):
        v.downsample(4)  # 4 // 4 = 1 voxel on the last axis
    with pytest.raises(VolumeError):
        v.slice(3)


def test_normalize_pair_joint_and_constant(rng):
    a = Volume(rng.uniform(2, 3, (4, 4, 4)))
    b = Volume(rng.uniform(1, 5, (4, 4, 4)))
    na, nb = normalize_pair(a, b)
    lo = min(na.data.min(), nb.data.min())
    hi = max(na.data.max(), nb.data.max())
    assert lo == pytest.approx(-1) and hi == pytest.approx(1)
    # one affine map for both
    s = 2.0 / (max(a.data.max(), b.data.max()) - min(a.data.min(), b.data.min()))
    np.testing.assert_allclose(na.data - nb.data, (a.data - b.data) * s, atol=1e-5)
    c = Volume(np.full((3, 3, 3), 7.0))
    nc1, nc2 = normalize_pair(c, c)
    assert np.all(nc1.data == 0) and np.all(nc2.data == 0)


@pytest.mark.parametrize("kind", DEMO_KINDS)
def test_demo_pairs_are_seeded_and_meaningfully_different(kind):
    a, b = demo_pair(kind, n=32)
    a2 = demo_volume(kind, n=32)
    np.testing.assert_array_equal(a.data, a2.data)
    mse = float(np.mean((a.data - b.data) ** 2))
    assert 1e-5 < mse < 0.05  # perturbed, not unrelated
    assert a.value_range()[0] >= 0 and a.value_range()[1] <= 1
    assert np.corrcoef(a.data.ravel(), b.data.ravel())[0, 1] > 0.8
