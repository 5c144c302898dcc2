"""read_dcgm and GPU load aggregation on real and real-format dcgm-exporter pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.formats.dcgm import GpuLoad, GpuReading, gpu_load_all, gpu_load_by_pod, read_dcgm
from adapters.formats.promtext import PageError

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "metrics"
BLANK = "9223372036854775794"


def _dcgm4_page() -> str:
    """dcgm-exporter 4.x style: HELP/TYPE, ", " label spacing, lower-case hostname."""
    out = []
    for name, help_text in (("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),
                            ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
                            ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB)."),
                            ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics "
                             "engine is active.")):
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for gpu, pod in (("0", "vllm-a"), ("1", "vllm-a"), ("2", "vllm-b"), ("3", "")):
            value = {"DCGM_FI_DEV_GPU_UTIL": str(90 + int(gpu)),
                     "DCGM_FI_DEV_FB_USED": "70000", "DCGM_FI_DEV_FB_FREE": "11000",
                     "DCGM_FI_PROF_GR_ENGINE_ACTIVE": f"0.{5 + int(gpu)}00000"}[name]
            if gpu == "1" and name == "DCGM_FI_PROF_GR_ENGINE_ACTIVE":
                value = BLANK
            namespace = "llm" if pod else ""
            out.append(
                f'{name}{{gpu="{gpu}", UUID="GPU-{gpu}", device="nvidia{gpu}", '
                f'modelName="NVIDIA H100 80GB HBM3", hostname="node-7", '
                f'DCGM_FI_DRIVER_VERSION="570.124.06", container="{pod and "vllm"}", '
                f'namespace="{namespace}", pod="{pod}"}} {value}')
    return "\n".join(out) + "\n"


def test_dcgm_2x_fixture() -> None:
    readings = read_dcgm((FIXTURES / "dcgm_exporter_2.x_k8s.txt").read_text())
    assert readings == [GpuReading(
        gpu="0", uuid="GPU-6bf47ca9-ad3e-15db-beed-1079a7d74116", hostname="", namespace="",
        pod="", util_pct=44.0, fb_used_mib=None, fb_free_mib=None, engine_active=None)]
    assert gpu_load_by_pod(readings, "") == {}
    assert gpu_load_all(readings) == GpuLoad(gpus=1, util_pct=44.0, engine_active=None,
                                             fb_used_mib=0.0, fb_free_mib=0.0)


def test_dcgm_4x_readme_fixture_has_none_of_the_fields_read() -> None:
    with pytest.raises(PageError) as info:
        read_dcgm((FIXTURES / "dcgm_exporter_4.x_readme.txt").read_text())
    assert str(info.value) == (
        "no DCGM_FI_DEV_FB_FREE, DCGM_FI_DEV_FB_USED, DCGM_FI_DEV_GPU_UTIL, "
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE on the page: is this a dcgm-exporter /metrics endpoint, "
        "and are those fields enabled in its counters CSV?")


def test_dcgm_4x_page_joined_per_gpu_with_blank_as_none() -> None:
    readings = read_dcgm(_dcgm4_page())
    assert [(r.gpu, r.uuid, r.hostname, r.namespace, r.pod) for r in readings] == [
        ("0", "GPU-0", "node-7", "llm", "vllm-a"), ("1", "GPU-1", "node-7", "llm", "vllm-a"),
        ("2", "GPU-2", "node-7", "llm", "vllm-b"), ("3", "GPU-3", "node-7", "", "")]
    assert readings[0] == GpuReading("0", "GPU-0", "node-7", "llm", "vllm-a", 90.0, 70000.0,
                                     11000.0, 0.5)
    assert readings[1].engine_active is None  # the DCGM blank sentinel


def test_gpu_load_by_pod_and_all() -> None:
    readings = read_dcgm(_dcgm4_page())
    by_pod = gpu_load_by_pod(readings, "llm")
    assert by_pod == {
        "vllm-a": GpuLoad(gpus=2, util_pct=90.5, engine_active=0.5, fb_used_mib=140000.0,
                          fb_free_mib=22000.0),
        "vllm-b": GpuLoad(gpus=1, util_pct=92.0, engine_active=0.7, fb_used_mib=70000.0,
                          fb_free_mib=11000.0),
    }
    assert gpu_load_by_pod(readings, "other") == {}
    everything = gpu_load_all(readings)
    assert everything.gpus == 4
    assert everything.util_pct == pytest.approx(91.5)
    assert everything.engine_active == pytest.approx((0.5 + 0.7 + 0.8) / 3)
    assert everything.fb_used_mib == 280000.0


def test_capitalised_hostname_and_no_pod_labels() -> None:
    page = ('DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",Hostname="metal-1"} 100\n'
            'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",Hostname="metal-1"} 4.2e+04\n'
            'DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-b",Hostname="metal-1"} NaN\n'
            'DCGM_FI_DEV_GPU_UTIL{gpu="2",UUID="GPU-c",Hostname="metal-1"} 2147483647\n')
    readings = read_dcgm(page)
    assert [(r.hostname, r.pod, r.util_pct) for r in readings] == [
        ("metal-1", "", 100.0), ("metal-1", "", None), ("metal-1", "", None)]
    assert readings[0].fb_used_mib == 42000.0
    assert gpu_load_all(readings) == GpuLoad(gpus=3, util_pct=100.0, engine_active=None,
                                             fb_used_mib=42000.0, fb_free_mib=0.0)


def test_shared_gpu_is_one_reading_per_pod_and_counts_once_overall() -> None:
    page = ('DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",namespace="llm",pod="p1"} 60\n'
            'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",namespace="llm",pod="p2"} 60\n')
    readings = read_dcgm(page)
    assert [r.pod for r in readings] == ["p1", "p2"]
    assert set(gpu_load_by_pod(readings, "llm")) == {"p1", "p2"}
    assert gpu_load_all(readings).gpus == 1
