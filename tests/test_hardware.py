"""leadrank.hardware: CPU flags, native bf16 and the dtype choice (no timings asserted)."""

import json
import warnings

import pytest
import torch

from leadrank import hardware

XEON_WITHOUT_BF16 = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz
flags\t\t: fpu vme sse sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz
flags\t\t: fpu vme sse sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni
"""

SAPPHIRE_RAPIDS = """\
processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""

ARM = """\
processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 bf16
CPU implementer\t: 0x41
"""


def test_parse_cpuinfo_reads_the_first_processor() -> None:
    model, flags = hardware.parse_cpuinfo(XEON_WITHOUT_BF16)
    assert model == "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"
    assert {"avx2", "avx512f", "avx512_vnni"} <= flags
    assert "avx512_bf16" not in flags and "amx_bf16" not in flags


def test_parse_cpuinfo_finds_amx() -> None:
    _, flags = hardware.parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert {"avx512_bf16", "amx_bf16", "amx_tile"} <= flags


def test_parse_cpuinfo_without_x86_flags_says_unknown() -> None:
    assert hardware.parse_cpuinfo(ARM) == (None, None)
    assert hardware.parse_cpuinfo("") == (None, None)


def test_cpu_info_keys() -> None:
    info = hardware.cpu_info()
    assert set(info) == {"model", "flags", "cores", "torch", "threads"}
    assert info["model"] and info["cores"] >= 1 and info["threads"] >= 1
    assert set(info["flags"]) <= set(hardware.RELEVANT_FLAGS)
    assert info["torch"] == torch.__version__


def test_cpu_info_without_proc_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "_read_cpuinfo", lambda: (None, None))
    info = hardware.cpu_info()
    assert info["flags"] == [] and info["model"]


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_follows_native_bf16(monkeypatch: pytest.MonkeyPatch, native: bool, expected: torch.dtype) -> None:
    monkeypatch.setattr(hardware, "native_bf16", lambda: native)
    assert hardware.resolve_dtype("auto") == expected


@pytest.mark.parametrize("native", [True, False])
def test_fp32_is_always_fp32(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(hardware, "native_bf16", lambda: native)
    assert hardware.resolve_dtype("fp32") == torch.float32


def test_forced_bf16_with_native_bf16_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardware.resolve_dtype("bf16") == torch.bfloat16


def test_forced_bf16_without_native_bf16_warns_but_obeys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="4x slower"):
        assert hardware.resolve_dtype("bf16") == torch.bfloat16


@pytest.mark.parametrize("choice", ["float16", "bfloat16", "BF16", ""])
def test_invalid_choice_names_the_choices(choice: str) -> None:
    with pytest.raises(ValueError, match="auto, fp32, bf16") as error:
        hardware.resolve_dtype(choice)
    assert repr(choice) in str(error.value)


def test_native_bf16_from_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for text, native in [(XEON_WITHOUT_BF16, False), (SAPPHIRE_RAPIDS, True)]:
        monkeypatch.setattr(hardware, "_read_cpuinfo", lambda text=text: hardware.parse_cpuinfo(text))
        hardware.native_bf16.cache_clear()
        assert hardware.native_bf16() is native
    hardware.native_bf16.cache_clear()


def test_unreadable_flags_measure_once_per_cpu_model(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("LEADRANK_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "_read_cpuinfo", lambda: (None, None))
    monkeypatch.setattr(hardware.platform, "processor", lambda: "Fake CPU")
    monkeypatch.setattr(hardware, "_matmul_gflops", lambda dtype: 7.1 if dtype == torch.bfloat16 else 27.1)
    hardware.native_bf16.cache_clear()
    try:
        assert hardware.native_bf16() is False
        saved = json.loads((tmp_path / "hardware.json").read_text())
        assert saved == {"Fake CPU": {"fp32_gflops": 27.1, "bf16_gflops": 7.1, "native_bf16": False}}

        def no_second_measurement(dtype: torch.dtype) -> float:
            raise AssertionError("measured again")

        monkeypatch.setattr(hardware, "_matmul_gflops", no_second_measurement)
        hardware.native_bf16.cache_clear()
        assert hardware.native_bf16() is False
    finally:
        hardware.native_bf16.cache_clear()


def test_describe_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    line = hardware.describe()
    assert "\n" not in line
    assert line.startswith(hardware.cpu_info()["model"])
    assert line.endswith("dtype auto -> fp32")
    assert f"torch {torch.__version__}" in line
