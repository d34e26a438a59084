"""What machine this is, as far as speed depends on it: the CPU, its instruction sets, the GPU.

INT8 gains and the fastest backend differ a lot between CPUs (an AVX-512 VNNI Xeon against
an AVX2-only EPYC), so benchmarks record these facts and ``backend="auto"`` keys its cached
choice on them. Torch-free: devices read it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Optional

# instruction sets that decide which kernels a runtime can use (x86 and Arm names as Linux prints them)
SPEED_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
               "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp",
               "asimdhp", "i8mm", "bf16", "sve", "sve2")


# the keys of /proc/cpuinfo that name a processor model: x86's vendor, family, model and
# stepping; Arm's implementer, part, variant and revision
CPU_ID_KEYS = {"vendor": "vendor_id", "family": "cpu family", "model": "model", "stepping": "stepping",
               "implementer": "CPU implementer", "part": "CPU part", "variant": "CPU variant",
               "revision": "CPU revision"}


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's ``key: value`` lines of a /proc/cpuinfo text."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key and key not in info and value.strip():
            info[key] = value.strip()
    return info


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """This machine's parsed /proc/cpuinfo (empty where there is none)."""
    path = Path("/proc/cpuinfo")
    return parse_cpuinfo(path.read_text(errors="replace")) if path.is_file() else {}


def cpu_name() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The speed-relevant instruction sets this CPU reports, e.g. ``['avx', 'avx2', 'fma', ...]``."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return [f for f in SPEED_FLAGS if f in flags]


def cpu_id(info: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """Which processor model this is, beyond its name (``info``: a ``parse_cpuinfo``, default
    this machine's). Virtual machines often show every generation of a vendor's server CPUs
    under one name ("AMD EPYC"), and the generations differ in speed and instruction sets:
    family 25 is AMD's Zen 3 and Zen 4, family 26 Zen 5. x86 numbers are integers; Arm's stay
    as printed (``0x41``)."""
    info = _cpuinfo() if info is None else info
    return {key: int(info[name]) if info[name].isdigit() else info[name]
            for key, name in CPU_ID_KEYS.items() if name in info}


def describe_machine(machine: Mapping[str, Any]) -> str:
    """A ``device_info`` record in one line: CPU (and its family and model, where recorded),
    instruction sets, cores, GPU. Benchmark tables and the docs print it."""
    ident = machine.get("cpu_id") or {}
    model = " ".join(f"{k} {ident[k]}" for k in ("family", "model", "part") if k in ident)
    features = " ".join(machine.get("cpu_features", [])) or "instruction sets not recorded"
    gpu = f"; GPU {machine['gpu'][0]}" if machine.get("gpu") else ""
    return (f"{machine.get('cpu', '?')}{', ' + model if model else ''} ({features}), "
            f"{machine.get('usable_cores', machine.get('logical_cores', '?'))} cores{gpu}")


def bf16_capable() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512_BF16 or AMX-BF16): where OpenVINO's
    ``bf16`` precision is a real speed-up rather than an emulation or a silent FP32."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_features()))


def device_info() -> dict[str, Any]:
    """The machine, as far as it can be read without root: CPU and its instruction sets, GPU,
    Jetson release and power mode."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu": cpu_name(), "cpu_id": cpu_id(), "cpu_features": cpu_features(),
                            "logical_cores": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    gpu = _command(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    if gpu:
        info["gpu"] = gpu.splitlines()
    tegra = Path("/etc/nv_tegra_release")
    if tegra.is_file():
        info["jetson"] = {"l4t": tegra.read_text(errors="replace").splitlines()[0].strip("# "),
                          "jetpack": _command(["dpkg-query", "--showformat=${Version}", "--show", "nvidia-jetpack"]),
                          "power_mode": _command(["nvpmodel", "-q"])}
    return info


def _command(argv: list[str]) -> Optional[str]:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


LIBRARIES = ("mipd-edge", "numpy", "opencv-python-headless", "onnxruntime", "onnxruntime-gpu", "openvino", "torch",
             "tensorrt", "nncf", "ray", "trackers")


def library_versions() -> dict[str, str]:
    """Installed versions of the packages that decide speed and results."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
