"""Your own operators and models: plugins that register them in the registries of ``flopsbench_zoo``
(``register_operator(OperatorDef(...))``, ``register_model(ModelDef(...))``), so that they are
counted, timed and exported like the built-in ones.

A plugin is named by a spec: a Python file (``path/to/plugin.py``), an importable module
(``package.module``), or a module's function (``package.module:register``, called with no
arguments), which is how an installed package declares one: an entry point in the group
``flopsbench.plugins``. A process loads each plugin once and remembers the order (``loaded``):
the timing workers build cases from their specs in fresh processes, so they load the parent's
plugins, in that order, before building any (``flopsbench.worker --plugin``).

Importable without torch (the worker imports it; a plugin imports what it needs)."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType

from flopsbench.report import error_line

GROUP = "flopsbench.plugins"
REFERENCE = re.compile(r"[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?")  # module, or module:function

_loaded: list[str] = []  # specs in load order (a file's as its absolute path)


class PluginError(Exception):
    """A plugin that cannot be found or fails while it loads; the message names it."""


def is_file(spec: str) -> bool:
    """A spec names a file when it ends in .py or holds a path separator (else it names a module)."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def load(spec: str) -> None:
    """Load the plugin ``spec`` names, unless this process has; a failure is a PluginError."""
    spec = str(Path(spec).resolve()) if is_file(spec) else spec.strip()
    if spec in _loaded:
        return
    try:
        _load_file(Path(spec)) if is_file(spec) else _load_reference(spec)
    except PluginError:
        raise
    except Exception as exc:  # noqa: BLE001 -- whatever a plugin raises, it is the plugin's failure
        raise PluginError(f"plugin {spec} failed while loading: {error_line(exc)}") from exc
    _loaded.append(spec)


def load_all(specs) -> None:
    for spec in specs:
        load(spec)


def installed() -> list[str]:
    """The specs of the installed packages' plugins (entry points in the group ``flopsbench.plugins``),
    by entry-point name."""
    return [point.value for point in sorted(entry_points(group=GROUP), key=lambda point: point.name)]


def loaded() -> tuple[str, ...]:
    """The plugins this process loaded, in order: what a worker loads to build the same cases."""
    return tuple(_loaded)


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise PluginError(f"no plugin file at {path}; give a Python file or an importable module name")
    # a name of its own (in sys.modules, as dataclasses and pickle need), the same in every process
    name = f"flopsbench_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"cannot load {path} as Python; give a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _load_reference(reference: str) -> None:
    """Import ``module`` or ``module:function`` (an entry point's object reference) and call the function."""
    if not REFERENCE.fullmatch(reference):
        raise PluginError(f"{reference!r} is neither a Python file (path/to/plugin.py) nor a module name "
                          "(package.module, or package.module:function)")
    module = reference.partition(":")[0]
    try:
        target = EntryPoint(name=reference, value=reference, group=GROUP).load()
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):  # the plugin, not its imports
            raise PluginError(f"no module {module!r} can be imported; give a Python file (path/to/plugin.py) "
                              "or an installed module") from None
        raise
    if callable(target) and not isinstance(target, ModuleType):
        target()
