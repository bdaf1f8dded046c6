"""Extension points: command groups (hwfarm.commands) and device kinds (hwfarm.devices)."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import typer

import farm.cli as cli
import farm.devices as devices
import farm.registry.plugins as plugins
from farm.devices.agent_device import AgentDevice, LocalTransport
from farm.registry.spec import DeviceSpec


def test_command_group_plugin_is_mounted(monkeypatch, capsys):
    plugin = typer.Typer()

    @plugin.command()
    def hello(name: str) -> None:
        print(f"hello {name}")

    monkeypatch.setitem(globals(), "PLUGIN_APP", plugin)
    ep = EntryPoint(name="greet", value=f"{__name__}:PLUGIN_APP", group="hwfarm.commands")
    broken = EntryPoint(name="broken", value="no_such_module_xyz:app", group="hwfarm.commands")
    monkeypatch.setattr(cli, "entry_points", lambda group: [ep, broken] if group == "hwfarm.commands" else [])
    monkeypatch.setattr(cli, "app", typer.Typer())  # a fresh app: don't leak the plugin into other tests
    cli.app.command("noop")(lambda: None)
    try:
        cli.main(["greet", "hello", "lab"])
    except SystemExit as e:
        assert e.code == 0
    captured = capsys.readouterr()
    assert "hello lab" in captured.out
    assert "command group 'broken'" in captured.err and "failed to load" in captured.err


def _shout(word: str) -> None:
    print(word.upper())


def test_plugin_commands_join_builtin_groups_and_top_level(monkeypatch, capsys):
    monkeypatch.setitem(globals(), "SHOUT", _shout)
    eps = [EntryPoint(name="dataset.shout", value=f"{__name__}:SHOUT", group="hwfarm.commands"),
           EntryPoint(name="shout", value=f"{__name__}:SHOUT", group="hwfarm.commands")]
    monkeypatch.setattr(cli, "entry_points", lambda group: eps if group == "hwfarm.commands" else [])
    fresh_dataset = typer.Typer()
    fresh_dataset.command("noop")(lambda: None)
    monkeypatch.setattr(cli, "app", typer.Typer())
    monkeypatch.setitem(cli._GROUPS, "dataset", fresh_dataset)
    cli.app.add_typer(fresh_dataset, name="dataset")
    cli.app.command("noop")(lambda: None)
    for argv, expect in ((["dataset", "shout", "kernels"], "KERNELS"), (["shout", "farm"], "FARM")):
        try:
            cli.main(argv)
        except SystemExit as e:
            assert e.code == 0
        assert expect in capsys.readouterr().out


class _PluginDevice(AgentDevice):
    """A third-party kind that reuses the host machinery under its own scheme."""

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec, LocalTransport())


def test_device_kind_plugin(monkeypatch):
    ep = EntryPoint(name="mylab", value=f"{__name__}:_PluginDevice", group="hwfarm.devices")
    plugins.device_plugins.cache_clear()
    monkeypatch.setattr(plugins, "entry_points", lambda group: [ep] if group == "hwfarm.devices" else [])
    try:
        spec = DeviceSpec(name="x", url="mylab://bench-7")
        dev = devices.open_device(spec)
        assert isinstance(dev, _PluginDevice) and spec.kind == "mylab"
    finally:
        plugins.device_plugins.cache_clear()
