"""docs/ARCHITECTURE.md's "Where to add things", walked: a part added the way the page says
is seen everywhere it should be, and a combination no part covers is a clear error."""

import json

import pytest

from helpers import tiny_config
from mipd_edge.errors import MipdEdgeError
from mipd_edge.methods import METHOD_TABLE, Method, method_info, methods_for, objective_builder, register_method
from mipd_edge.train.distill import ObjectiveInputs, distill
from mipd_edge.train.loop import Objective


@pytest.fixture
def probe_method():
    """A method with a teacher and no rationales whose builder records that it ran."""
    built = []

    def build(inputs: ObjectiveInputs):
        built.append(inputs.cfg.method)
        return Objective(), {"built_by": "probe"}

    register_method(Method("probe", teacher=True, rationales=False, objectives={"gsr": build}, what="a test method"))
    yield built
    del METHOD_TABLE["probe"]


def test_a_method_trains_with_the_objective_its_row_names(probe_method, tiny_world, tmp_path, cache_dir):
    distill(tiny_world / "data", tmp_path / "s", tiny_config(method="probe"), tiny_world / "teacher",
            progress=False, cache_dir=cache_dir)
    assert probe_method == ["probe"]  # its own builder, not plain KD's
    info = json.loads((tmp_path / "s" / "config.json").read_text())
    assert info["method"] == "probe" and info["built_by"] == "probe"
    assert "probe" in methods_for("gsr") and "probe" not in methods_for("hoi")
    with pytest.raises(MipdEdgeError, match="hoi training supports methods"):
        objective_builder("probe", "hoi")  # a combination no row covers


def test_every_shipped_method_names_an_importable_builder_per_task():
    for method in METHOD_TABLE.values():
        for task in method.tasks:
            assert callable(objective_builder(method.name, task))
    with pytest.raises(MipdEdgeError, match="hoi training supports methods"):
        method_info("kd", "hoi")
    with pytest.raises(MipdEdgeError, match="method must be one of"):
        method_info("better-kd")
    with pytest.raises(MipdEdgeError, match="names no objective builder"):
        register_method(Method("empty", teacher=False, rationales=False, objectives={}, what="nothing"))
