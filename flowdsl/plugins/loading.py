"""Loading user-defined layers, only by the user's explicit choice: modules, files, entry points.

Example:
    >>> load_plugins([], entry_points=False)
    []
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from flowdsl.errors import FlowDSLError
from flowdsl.plugins.decorator import PluginError

__all__ = ["load_plugins", "load_module", "load_entry_points", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "flowdsl.layers"
_LOADED_ENTRY_POINTS: set[str] = set()


def load_module(target: str):
    """Import a plugin: a module name (``my_layers``, ``pkg.layers``) or a ``.py`` file path."""
    try:
        if target.endswith(".py") or "/" in target or "\\" in target:
            path = Path(target)
            if not path.is_file():
                raise PluginError(target, f"cannot load plugin '{target}': no such file")
            name = f"flowdsl_plugin_{path.stem}"  # executed again on each load: its layers re-register themselves
            spec = importlib.util.spec_from_file_location(name, path.resolve())
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            return module
        return importlib.import_module(target)
    except FlowDSLError:
        raise
    except Exception as err:
        raise PluginError(target, f"cannot load plugin '{target}': {type(err).__name__}: {err}") from None


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Load every installed plugin of the entry-point group (once); returns the names loaded now."""
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=group):
        key = f"{ep.name}={ep.value}"
        if key in _LOADED_ENTRY_POINTS:
            continue
        _LOADED_ENTRY_POINTS.add(key)
        try:
            obj = ep.load()
            if inspect.isfunction(obj):
                obj()
        except FlowDSLError:
            raise
        except Exception as err:
            raise PluginError(ep.value, f"cannot load installed plugin '{ep.name}' ({ep.value}): "
                                        f"{type(err).__name__}: {err}") from None
        loaded.append(ep.name)
    return loaded


def load_plugins(modules=(), entry_points: bool = True) -> list[str]:
    """Load the installed plugins (entry points) and the given modules or files; their names."""
    names = load_entry_points() if entry_points else []
    for m in modules or ():
        load_module(m)
        names.append(m)
    return names
