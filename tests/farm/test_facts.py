"""The agent's machine facts: parsing /proc/cpuinfo for the widest SIMD extension."""

from __future__ import annotations

import pytest

from farm.agent import facts

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma avx512f avx512dq
"""
X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse sse2 sse4_2 avx avx2 fma\n"
ARM = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
"""


@pytest.mark.parametrize(("text", "want"), [(X86, "avx512f"), (X86_AVX2, "avx2"), (ARM, "asimd"),
                                            ("processor\t: 0\nflags\t: fpu\n", None), (None, None)])
def test_simd_is_the_widest_extension_in_cpuinfo(monkeypatch: pytest.MonkeyPatch, text: str | None,
                                                 want: str | None) -> None:
    monkeypatch.setattr(facts, "_read", lambda path: text if path == "/proc/cpuinfo" else None)
    assert facts.simd() == want


def test_host_facts_carry_simd() -> None:
    assert "simd" in facts.host_facts()
