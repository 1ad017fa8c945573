"""NeuralField query/bake/save/load and the file format's errors."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from core.errors import FieldFileError, VolsightError
from models.field import grid_points
from models.registry import MODEL_CLASSES, model_config
from models.store import field_info, is_field_file, load_field, write_tensor_file


def make(model: str, **kw):
    cfg = model_config(model, "small", init_seed=3)
    if model == "apmgsrn":
        cfg.update(n_grids=3, grid_shape=[6, 7, 8])
    field = MODEL_CLASSES[model](cfg, channels=kw.get("channels", 1), value_range=(-2.0, 3.0),
                                 source_shape=(5, 6, 7), name="probe", spacing=(2.0, 1.0, 0.5))
    with torch.no_grad():  # move away from the near-zero init so values differ everywhere
        for p in field.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.3)
    return field


def test_apmgsrn_medium_matches_train_json_parameter_count():
    field = MODEL_CLASSES["apmgsrn"](model_config("apmgsrn", "medium"))
    assert field.parameter_count() == 1_055_040  # notes G1: 16 x 2 x 32^3 grids, 16 4x4 transforms, 2x64 decoder
    assert MODEL_CLASSES["fvsrn"](model_config("fvsrn", "medium")).parameter_count() == 1_055_296


@pytest.mark.parametrize("model", ["apmgsrn", "fvsrn", "hashgrid"])
def test_save_load_query_identical(tmp_path, model):
    field = make(model, channels=3)
    field.summary = {"psnr": 12.5, "iterations": 3}
    path = tmp_path / "f.vsf"
    field.save(path)
    loaded = load_field(path)
    pts = torch.rand(1000, 3) * 2 - 1
    with torch.no_grad():
        assert torch.equal(field.query(pts), loaded.query(pts))
    assert loaded.value_range == (-2.0, 3.0) and loaded.source_shape == (5, 6, 7) and loaded.channels == 3
    assert loaded.spacing == (2.0, 1.0, 0.5)
    assert loaded.summary["psnr"] == 12.5
    info = field_info(path)
    assert info["model"] == model and info["source_shape"] == [5, 6, 7] and info["psnr"] == 12.5
    assert info["format_version"] == 1 and is_field_file(path)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary left behind


def test_query_is_denormalised():
    field = make("apmgsrn")
    pts = torch.rand(50, 3) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(field.query(pts), field(pts) * 5.0 - 2.0, atol=1e-6)
    with pytest.raises(VolsightError, match=r"\[N, 3\]"):
        field.query(torch.zeros(4, 2))


@pytest.mark.parametrize("model", ["apmgsrn", "hashgrid"])
def test_bake_equals_query_at_grid_points(model):
    field = make(model)
    shape = (5, 9, 4)
    vol = field.bake(shape, chunk=17)  # chunk boundaries fall inside rows
    total = shape[0] * shape[1] * shape[2]
    with torch.no_grad():
        same_chunks = torch.cat([field.query(grid_points(shape, s, min(total, s + 17))) for s in range(0, total, 17)])
        at_once = field.query(grid_points(shape))
    assert vol.shape == shape and vol.channels == 1
    # bit-identical for the same batches; BLAS may round differently for another batch size
    np.testing.assert_array_equal(vol.data, same_chunks.T.reshape(1, *shape).numpy())
    np.testing.assert_allclose(vol.data, at_once.T.reshape(1, *shape).numpy(), rtol=1e-5, atol=1e-5)
    # grid points follow the align_corners convention: corners at -1/+1, x along W
    pts = grid_points(shape)
    assert pts[0].tolist() == [-1.0, -1.0, -1.0] and pts[-1].tolist() == [1.0, 1.0, 1.0]
    assert pts[1].tolist() == pytest.approx([-1 + 2 / 3, -1.0, -1.0])


def test_bake_defaults_to_source_shape_and_keeps_the_box():
    field = make("fvsrn")
    vol = field.bake()
    assert vol.shape == (5, 6, 7) and vol.spacing == (2.0, 1.0, 0.5)
    assert field.bake((9, 11, 13)).spacing == pytest.approx((1.0, 0.5, 0.25))


def test_truncated_file(tmp_path):
    path = tmp_path / "f.vsf"
    make("apmgsrn").save(path)
    data = path.read_bytes()
    for cut in (len(data) - 10, 100, 5):
        bad = tmp_path / f"cut{cut}.vsf"
        bad.write_bytes(data[:cut])
        with pytest.raises(FieldFileError, match="truncated|too short"):
            load_field(bad)
        assert not is_field_file(bad)


def test_wrong_version(tmp_path):
    path = tmp_path / "v2.vsf"
    write_tensor_file(path, {"x": torch.zeros(2)}, {"kind": "field", "model": "apmgsrn"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    table = json.loads(raw[8:8 + n])
    header = json.loads(table["__metadata__"]["volsight"])
    header["version"] = 99
    table["__metadata__"]["volsight"] = json.dumps(header)
    new = json.dumps(table).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])
    with pytest.raises(FieldFileError, match="version 99 is not supported"):
        load_field(path)


def test_wrong_kind_of_file(tmp_path):
    npz = tmp_path / "data.vsf"
    with open(npz, "wb") as f:
        np.savez(f, a=np.zeros(3))
    with pytest.raises(FieldFileError, match="zip archive"):
        load_field(npz)
    noise = tmp_path / "noise.vsf"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(FieldFileError, match="not a volsight field"):
        load_field(noise)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, other)
    with pytest.raises(FieldFileError, match="without a volsight header"):
        load_field(other)
    with pytest.raises(FieldFileError, match="no such file"):
        load_field(tmp_path / "missing.vsf")
    assert not is_field_file(npz) and not is_field_file(noise)


def test_checkpoint_is_not_a_field(tmp_path):
    path = tmp_path / "ck.vsf"
    write_tensor_file(path, {"x": torch.zeros(1)}, {"kind": "checkpoint"})
    with pytest.raises(FieldFileError, match="expected a 'field'"):
        load_field(path)
