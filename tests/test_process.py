"""Process-wide tuning (lorat_plugin.process): the Python API gets the CLI's allocator tuning, once, and it can be
declined."""
from __future__ import annotations

import platform

import pytest

from lorat_plugin import process


def test_a_cpu_engine_tunes_the_allocator_once_and_it_can_be_declined(monkeypatch, tiny_config) -> None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    from lorat_plugin.engine import TrackingEngine
    from lorat_plugin.model import build_model

    monkeypatch.setattr(process, "_TUNED", False)
    monkeypatch.setenv("LORAT_NO_MALLOC_TUNING", "1")
    TrackingEngine(build_model(tiny_config, merge=True), device="cpu", dtype="fp32")
    assert process._TUNED is False
    monkeypatch.delenv("LORAT_NO_MALLOC_TUNING")
    TrackingEngine(build_model(tiny_config, merge=True), device="cpu", dtype="fp32")
    assert process._TUNED is True and process.tune_cpu_allocator() is True
