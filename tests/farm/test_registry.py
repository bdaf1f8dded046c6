"""devices.yaml: validation with located errors, and comment-preserving edits."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm.errors import RegistryError
from farm.registry import add_device, load_registry, parse_device_url, remove_device

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "devices.yaml"
    p.write_text(text)
    return p


def test_repo_registry_is_valid_and_has_the_host():
    reg = load_registry(ROOT / "devices.yaml")
    host = reg.get("host-cpu")
    assert host.kind == "local" and host.threads == 1 and host.runtime == "onnxruntime"


def test_repo_registry_examples_are_valid_when_uncommented(tmp_path):
    """Every commented example in devices.yaml must be a valid entry once a user uncomments it."""
    text = (ROOT / "devices.yaml").read_text()
    lines = []
    for line in text.splitlines():
        s = line.lstrip()
        if s.startswith("# - name:") or (s.startswith("#   ") and ":" in s):
            indent = line[: len(line) - len(s)]
            lines.append(indent + s[2:])
        else:
            lines.append(line)
    reg = load_registry(write(tmp_path, "\n".join(lines)))
    kinds = {d.kind for d in reg.devices}
    assert kinds == {"local", "ssh", "adb", "serial", "sim"}
    assert len(reg.devices) >= 7


@pytest.mark.parametrize(
    "text, expected",
    [
        ("devices:\n  - name: a\n    url: local://cpu\n  - name: a\n    url: local://cpu\n",
         ["devices.yaml:4:", "duplicate device name 'a'", "line 2"]),
        ("devices:\n  - name: a\n    url: gopher://x\n", ["devices.yaml:3:", "device 'a'", "'url'", "unknown scheme 'gopher://'"]),
        ("devices:\n  - name: a\n    url: local://cpu\n    thread: 2\n", ["devices.yaml:4:", "'thread'", "did you mean 'threads'"]),
        ("devices:\n  - name: a\n    url: local://cpu\n    threads: 0\n", ["devices.yaml:4:", "'threads'", "greater than or equal to 1"]),
        ("devices:\n  - name: a\n    url: local://cpu\n    outage_s: -5\n",
         ["devices.yaml:4:", "'outage_s'", "greater than or equal to 0"]),
        ("devices:\n  - url: local://cpu\n", ["devices.yaml:2:", "entry #1", "'name'", "required"]),
        ("devices:\n  - name: a\n    url: local://cpu\n  bad indent: [\n", ["devices.yaml:", "invalid YAML"]),
        ("devices:\n  - name: a b\n    url: local://cpu\n", ["'name'", "letters, digits"]),
        ("devices:\n  - name: a\n    url: ssh://host-without-user\n", ["names no user"]),
        ("devices:\n  - name: a\n    url: local://cpu\n    runtime: tensorflow\n", ["'runtime'"]),
        ("device:\n  - name: a\n", ["unknown top-level key 'device'"]),
        ("devices: 3\n", ["'devices' must be a list"]),
        ("\x00\x01binary", ["devices.yaml"]),
    ],
)
def test_bad_registries_name_file_line_entry_field(tmp_path, text, expected):
    with pytest.raises(RegistryError) as exc:
        load_registry(write(tmp_path, text))
    msg = str(exc.value)
    assert "\n" not in msg
    for part in expected:
        assert part in msg, msg


def test_missing_registry_says_how_to_fix(tmp_path):
    with pytest.raises(RegistryError, match="registry file not found.*--registry"):
        load_registry(tmp_path / "nope.yaml")


def test_unknown_device_suggests_close_name(tmp_path):
    reg = load_registry(write(tmp_path, "devices:\n  - name: host-cpu\n    url: local://cpu\n"))
    with pytest.raises(RegistryError, match="did you mean 'host-cpu'"):
        reg.get("host-cpux")


def test_urls_parse():
    u = parse_device_url("ssh://pi@10.0.0.5:2222")
    assert (u.scheme, u.user, u.host, u.port) == ("ssh", "pi", "10.0.0.5", 2222)
    s = parse_device_url("serial:///dev/ttyACM0?baud=115200")
    assert s.path == "/dev/ttyACM0" and s.query == {"baud": "115200"}
    assert parse_device_url("sim://raspi4?seed=3").query == {"seed": "3"}
    assert parse_device_url("adb://usb/R5CX123").path == "/R5CX123"


EDITABLE = """\
# my lab
devices:
  # the host
  - name: host-cpu
    url: local://cpu   # keep me
  # a board
  - name: rpi
    url: ssh://pi@10.0.0.2
"""


def test_add_keeps_comments_and_order(tmp_path):
    p = write(tmp_path, EDITABLE)
    spec = add_device(p, "phone", "adb://10.0.0.9:5555", {"threads": "2", "affinity": "[4, 5]", "tags": "[gpu]"})
    assert spec.threads == 2 and spec.affinity == (4, 5) and spec.tags == ("gpu",)
    text = p.read_text()
    for kept in ("# my lab", "# the host", "# keep me", "# a board"):
        assert kept in text
    assert load_registry(p).names() == ["host-cpu", "rpi", "phone"]


def test_add_invalid_leaves_file_untouched(tmp_path):
    p = write(tmp_path, EDITABLE)
    for name, url, sets in [("rpi", "local://cpu", {}), ("x", "bogus://y", {}), ("x", "local://cpu", {"threads": "-1"}),
                            ("x", "local://cpu", {"colour": "red"})]:
        with pytest.raises(RegistryError):
            add_device(p, name, url, sets)
        assert p.read_text() == EDITABLE


def test_remove_keeps_other_comments(tmp_path):
    p = write(tmp_path, EDITABLE)
    remove_device(p, "rpi")
    text = p.read_text()
    assert "rpi" not in text and "# the host" in text and "# keep me" in text
    assert load_registry(p).names() == ["host-cpu"]
    with pytest.raises(RegistryError, match="no device named 'rpi'"):
        remove_device(p, "rpi")


def test_add_to_missing_file_creates_it(tmp_path):
    p = tmp_path / "new.yaml"
    add_device(p, "host-cpu", "local://cpu")
    assert load_registry(p).names() == ["host-cpu"]
