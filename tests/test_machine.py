"""What a benchmark and ``auto`` record about the machine: the CPU's model beyond its name."""

import platform
from pathlib import Path

from mipd_edge.deploy.runtimes import selection
from mipd_edge.machine import cpu_id, describe_machine, device_info, parse_cpuinfo

ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu avx2 avx512f avx512_vnni avx_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
"""
NEOVERSE = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd asimddp i8mm bf16
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd40
CPU revision\t: 1
"""


def test_cpu_id_names_the_generation_behind_one_marketing_name():
    assert cpu_id(parse_cpuinfo(ZEN5)) == {"vendor": "AuthenticAMD", "family": 26, "model": 2, "stepping": 1}
    assert cpu_id(parse_cpuinfo(NEOVERSE)) == {"implementer": "0x41", "part": "0xd40", "variant": "0x1",
                                               "revision": 1}
    assert cpu_id({}) == {}
    here = device_info()["cpu_id"]
    if platform.machine() == "x86_64" and Path("/proc/cpuinfo").is_file():
        assert isinstance(here["family"], int) and isinstance(here["model"], int) and here["vendor"]


def test_machine_line_with_and_without_a_recorded_model():
    zen5 = {"cpu": "AMD EPYC", "cpu_id": cpu_id(parse_cpuinfo(ZEN5)), "cpu_features": ["avx2", "avx512f"],
            "usable_cores": 2, "gpu": ["NVIDIA H100, 580.0, 81559 MiB"]}
    assert describe_machine(zen5) == ("AMD EPYC, family 26 model 2 (avx2 avx512f), 2 cores; "
                                      "GPU NVIDIA H100, 580.0, 81559 MiB")
    older = {"cpu": "AMD EPYC", "cpu_features": ["avx2"], "logical_cores": 4}  # a record from before cpu_id
    assert describe_machine(older) == "AMD EPYC (avx2), 4 cores"
    arm = {"cpu": "Neoverse", "cpu_id": cpu_id(parse_cpuinfo(NEOVERSE)), "usable_cores": 8}
    assert describe_machine(arm) == "Neoverse, part 0xd40 (instruction sets not recorded), 8 cores"


def test_auto_measures_again_on_another_cpu_model_of_the_same_name(tmp_path, monkeypatch):
    (tmp_path / "bundle.json").write_text("{}")
    key = selection.cache_key(tmp_path, "CPU", None, [("openvino", "int8")], {})
    assert key == selection.cache_key(tmp_path, "CPU", None, [("openvino", "int8")], {})
    monkeypatch.setattr(selection, "cpu_id", lambda: {"vendor": "AuthenticAMD", "family": 25, "model": 17})
    assert selection.cache_key(tmp_path, "CPU", None, [("openvino", "int8")], {}) != key
