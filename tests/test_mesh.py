"""Tests of training/mesh.py: mesh specs on 8 fake CPU devices, distributed start-up values."""
import jax
import pytest

from metafusion_jax.training import mesh as mesh_lib
from reliability import bad_input


def test_minus_one_takes_remaining_devices():
    mesh = mesh_lib.make_mesh((("runs", -1), ("members", 2)))
    assert dict(mesh.shape) == {"runs": 4, "members": 2}
    assert mesh.size == jax.device_count() == 8


def test_default_single_axis_uses_all_devices():
    assert dict(mesh_lib.make_mesh((("data", -1),)).shape) == {"data": 8}
    assert dict(mesh_lib.make_mesh((("data", -1),), jax.devices()[:1]).shape) == {"data": 1}


def test_fixed_sizes_below_device_count_use_first_devices():
    mesh = mesh_lib.make_mesh((("data", 2),))
    assert dict(mesh.shape) == {"data": 2}
    assert list(mesh.devices.flat) == jax.devices()[:2]


def test_axes_are_auto():
    mesh = mesh_lib.make_mesh((("data", 8),))
    assert mesh.axis_types == (jax.sharding.AxisType.Auto,)


@pytest.mark.parametrize("spec, match", [
    ((("data", -1), ("m", 3)), "multiple of 3"),
    ((("data", 16),), "needs 16 devices"),
    ((("a", -1), ("b", -1)), "more than one -1"),
    ((("a", 2), ("a", 4)), "repeats an axis"),
    ((("data", 0),), "size 0"),
    ((), "empty"),
    (("data",), "not an"),
])
def test_bad_mesh_spec(spec, match):
    with bad_input("config.mesh that does not fit the devices or is malformed", match=match):
        mesh_lib.make_mesh(spec)


def test_single_process_is_noop(monkeypatch):
    for name in (mesh_lib.ENV_COORDINATOR, mesh_lib.ENV_NUM_PROCESSES, mesh_lib.ENV_PROCESS_ID,
                 mesh_lib.ENV_AUTO):
        monkeypatch.delenv(name, raising=False)
    assert mesh_lib.initialize_distributed() is False
    assert mesh_lib.is_writer()


def test_partial_distributed_values(monkeypatch):
    monkeypatch.setenv(mesh_lib.ENV_COORDINATOR, "127.0.0.1:1234")
    monkeypatch.delenv(mesh_lib.ENV_NUM_PROCESSES, raising=False)
    with bad_input("multi-process flags or environment incomplete", match="process count >= 2"):
        mesh_lib.initialize_distributed()
    with bad_input("multi-process flags or environment incomplete", match="process id in"):
        mesh_lib.initialize_distributed(num_processes=2, process_id=5)
