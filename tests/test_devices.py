"""Device and precision choices: mixed precision only where the CPU has native bf16, a bf16 query
that never raises, and the allocator setting."""

import os
import subprocess
import sys

import pytest
import torch

from sfcli import devices
from sfcli.devices import autocast, cpu_has_bf16


def test_cpu_mixed_precision_only_where_the_cpu_has_native_bf16():
    with autocast(torch.device("cpu"), amp=True):
        assert torch.is_autocast_enabled("cpu") == cpu_has_bf16()
    with autocast(torch.device("cpu"), amp=False):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_freed_memory_is_kept_by_the_process():
    # A fresh interpreter, so that this test process keeps its default allocator.
    code = "from sfcli.devices import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return {flag for line in f if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return set()


def test_bf16_query_is_a_bool_and_true_where_the_cpu_has_native_bf16():
    assert isinstance(cpu_has_bf16(), bool)
    # ONEDNN_MAX_CPU_ISA caps oneDNN below the CPU's flags (AVX2 kernels on a bf16 CPU): no bf16 then.
    if cpu_flags() & {"avx512_bf16", "amx_bf16"} and "ONEDNN_MAX_CPU_ISA" not in os.environ:
        assert cpu_has_bf16()


def test_bf16_query_that_raises_means_float32(monkeypatch, caplog):
    def broken():
        raise RuntimeError("no such op")

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", broken)
    cpu_has_bf16.cache_clear()
    try:
        with caplog.at_level("DEBUG", logger=devices.__name__):
            assert cpu_has_bf16() is False
        assert "no such op" in caplog.text
        with autocast(torch.device("cpu"), amp=True):
            assert not torch.is_autocast_enabled("cpu")
    finally:
        monkeypatch.undo()
        cpu_has_bf16.cache_clear()
