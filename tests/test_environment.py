"""CPU and board identity, clock, governor and temperature, read from /proc and /sys text.

The cpuinfo fixtures are real files' text: a Raspberry Pi 4 Model B (arm64 kernel: no ``model name``
line), an RK3588 (4 Cortex-A55 + 4 Cortex-A76) and an x86 server. /proc and /sys trees are faked
under tmp_path."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from flopsbench import environment
from flopsbench.environment import (board_model, capture_environment, cpu_environment, cpu_frequency_mhz,
                                    cpu_governor, cpu_model, soc_temperature_c)

FIXTURES = Path(__file__).parent / "fixtures"
PI4 = (FIXTURES / "cpuinfo_raspberry_pi4.txt").read_text()
RK3588 = (FIXTURES / "cpuinfo_rk3588.txt").read_text()
X86 = (FIXTURES / "cpuinfo_x86_64.txt").read_text()
PLATFORM_FALLBACK = platform.processor() or platform.machine()


def arm_cpuinfo(*parts: tuple[str, str]) -> str:
    """One arm64 cpuinfo block per (implementer, part), in the kernel's format."""
    return "".join(f"processor\t: {i}\nCPU implementer\t: {imp}\nCPU architecture: 8\nCPU part\t: {part}\n\n"
                   for i, (imp, part) in enumerate(parts))


def write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


def test_pi4_cpuinfo_decodes_to_cortex_a72():
    # The old reader looked only for "model name", which an arm64 kernel does not print.
    assert cpu_model(PI4) == "Cortex-A72"


def test_big_little_soc_lists_each_core_kind_with_its_count():
    assert cpu_model(RK3588) == "4× Cortex-A55 + 4× Cortex-A76"


def test_x86_model_name_is_kept():
    assert cpu_model(X86) == "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"


def test_an_emulator_or_32_bit_kernel_model_name_does_not_hide_the_decoded_part():
    invented = PI4.replace("BogoMIPS", "model name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS")
    assert invented.count("model name") == 4
    assert cpu_model(invented) == "Cortex-A72"


@pytest.mark.parametrize("implementer, part, name", [
    ("0x41", "0xd0c", "Neoverse-N1"),
    ("0x41", "0xd4f", "Neoverse-V2"),
    ("0x41", "0xd82", "Cortex-X4"),
    ("0x41", "0xd99", "ARM part 0xd99"),
    ("0x51", "0x804", "Qualcomm Kryo 4XX Gold"),
    ("0x4e", "0x004", "NVIDIA Carmel"),
    ("0x61", "0x023", "Apple M1 Firestorm"),
    ("0xc0", "0xac3", "Ampere AmpereOne"),
    ("0x51", "0xabc", "Qualcomm part 0xabc"),
    ("0x99", "0x1", "implementer 0x99 part 0x001"),
])
def test_arm_parts_are_named_or_numbered_never_just_the_architecture(implementer, part, name):
    assert cpu_model(arm_cpuinfo((implementer, part), (implementer, part))) == name


@pytest.mark.parametrize("cpuinfo", ["", "garbage without colons\n\n", arm_cpuinfo(("0x4g", "0xd08")),
                                     "CPU implementer\t: 0x41\n\n"])
def test_unreadable_cpuinfo_falls_back_to_the_platform(cpuinfo):
    assert cpu_model(cpuinfo) == PLATFORM_FALLBACK


def test_cpu_model_reads_cpuinfo_under_the_proc_root(tmp_path):
    assert cpu_model(proc=tmp_path) == PLATFORM_FALLBACK  # no cpuinfo there
    write(tmp_path / "cpuinfo", PI4)
    assert cpu_model(proc=tmp_path) == "Cortex-A72"


def test_board_model_from_the_nul_terminated_device_tree_string(tmp_path):
    write(tmp_path / "device-tree" / "model", b"Radxa ROCK 5B\x00")
    assert board_model(proc=tmp_path) == "Radxa ROCK 5B"


def test_board_model_falls_back_to_the_pi_kernels_cpuinfo_model_line(tmp_path):
    write(tmp_path / "cpuinfo", PI4)
    assert board_model(proc=tmp_path) == "Raspberry Pi 4 Model B Rev 1.1"


@pytest.mark.parametrize("cpuinfo", [None, X86, RK3588])
def test_no_board_model_without_a_device_tree(tmp_path, cpuinfo):
    if cpuinfo is not None:
        write(tmp_path / "cpuinfo", cpuinfo)
    assert board_model(proc=tmp_path) is None


def fake_cpufreq(sys: Path, core: int, khz: str, governor: str) -> None:
    write(sys / f"devices/system/cpu/cpu{core}/cpufreq/scaling_cur_freq", khz)
    write(sys / f"devices/system/cpu/cpu{core}/cpufreq/scaling_governor", governor)


def test_frequency_and_governor_of_the_requested_core(tmp_path):
    fake_cpufreq(tmp_path, 0, "1800000\n", "ondemand\n")
    fake_cpufreq(tmp_path, 4, "2400000\n", "performance\n")
    assert cpu_frequency_mhz(0, sys=tmp_path) == 1800.0
    assert cpu_governor(0, sys=tmp_path) == "ondemand"
    assert cpu_frequency_mhz(4, sys=tmp_path) == 2400.0
    assert cpu_governor(4, sys=tmp_path) == "performance"


def test_frequency_and_governor_are_none_when_unreadable(tmp_path):
    assert cpu_frequency_mhz(0, sys=tmp_path) is None
    assert cpu_governor(0, sys=tmp_path) is None
    fake_cpufreq(tmp_path, 0, "<unsupported>\n", "\n")
    assert cpu_frequency_mhz(0, sys=tmp_path) is None
    assert cpu_governor(0, sys=tmp_path) is None


def fake_thermal_zone(sys: Path, index: int, kind: str, temp: str) -> None:
    write(sys / f"class/thermal/thermal_zone{index}/type", kind + "\n")
    write(sys / f"class/thermal/thermal_zone{index}/temp", temp + "\n")


def test_soc_temperature_prefers_the_cpu_or_soc_zone(tmp_path):
    fake_thermal_zone(tmp_path, 0, "acpitz", "27800")
    fake_thermal_zone(tmp_path, 2, "x86_pkg_temp", "55000")
    fake_thermal_zone(tmp_path, 10, "cpu-thermal", "48686")  # zone10 sorts after zone2 numerically
    assert soc_temperature_c(sys=tmp_path) == 55.0


def test_pi_cpu_thermal_zone(tmp_path):
    fake_thermal_zone(tmp_path, 0, "cpu-thermal", "48686")
    fake_thermal_zone(tmp_path, 1, "gpu-thermal", "47000")
    assert soc_temperature_c(sys=tmp_path) == pytest.approx(48.686)


def test_soc_temperature_falls_back_to_the_first_readable_zone(tmp_path):
    fake_thermal_zone(tmp_path, 0, "iwlwifi_1", "")  # reading fails while the interface is down
    fake_thermal_zone(tmp_path, 1, "acpitz", "27800")
    fake_thermal_zone(tmp_path, 2, "pch_cannonlake", "40000")
    assert soc_temperature_c(sys=tmp_path) == 27.8


def test_soc_temperature_is_none_when_unreadable(tmp_path):
    assert soc_temperature_c(sys=tmp_path) is None
    fake_thermal_zone(tmp_path, 0, "cpu-thermal", "n/a")
    assert soc_temperature_c(sys=tmp_path) is None


def test_cpu_environment_of_a_pi_reads_the_first_pinned_core(tmp_path):
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    write(proc / "cpuinfo", PI4)
    write(proc / "device-tree" / "model", b"Raspberry Pi 4 Model B Rev 1.1\x00")
    fake_cpufreq(sys, 0, "600000", "ondemand")
    fake_cpufreq(sys, 2, "1500000", "performance")
    fake_thermal_zone(sys, 0, "cpu-thermal", "51121")
    assert cpu_environment((2, 3), proc=proc, sys=sys) == {
        "cpu_model": "Cortex-A72", "board_model": "Raspberry Pi 4 Model B Rev 1.1", "cpufreq_core": 2,
        "cpu_frequency_mhz": 1500.0, "cpu_governor": "performance", "soc_temperature_c": 51.121}


def test_cpu_environment_with_nothing_readable(tmp_path):
    assert cpu_environment((), proc=tmp_path, sys=tmp_path) == {
        "cpu_model": PLATFORM_FALLBACK, "board_model": None, "cpufreq_core": None,
        "cpu_frequency_mhz": None, "cpu_governor": None, "soc_temperature_c": None}


def test_capture_environment_records_the_cpu_keys_on_this_machine():
    env = capture_environment(with_torch=False)
    assert env["cpu_model"] and env["cpu_model"] != "aarch64"
    assert env["cpufreq_core"] == env["allowed_cores"][0]
    for key in ("board_model", "cpu_frequency_mhz", "cpu_governor", "soc_temperature_c"):
        assert key in env
    assert env["cpu_frequency_mhz"] is None or env["cpu_frequency_mhz"] > 0
    assert environment.capture_environment(with_torch=False, cores=(0,))["cpufreq_core"] == 0
