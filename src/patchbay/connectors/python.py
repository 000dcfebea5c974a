"""``type = "python"``: tools, resources and prompts written with ``@tool``, ``@resource`` and ``@prompt``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import model_validator

from patchbay.connectors.base import ConnectorEnv, ConnectorOptions, Health
from patchbay.decorators import ATTR
from patchbay.definitions import Prompt, Resource, ResourceTemplate, Tool
from patchbay.errors import ConfigError


class PythonOptions(ConnectorOptions):
    path: str | None = None
    """A .py file, relative to the config file."""
    module: str | None = None
    """An importable module name, e.g. ``acme.tools``."""

    @model_validator(mode="after")
    def _one_source(self) -> PythonOptions:
        if (self.path is None) == (self.module is None):
            raise ValueError("give exactly one of 'path' (a .py file) or 'module' (an importable module)")
        return self


class PythonConnector:
    Options = PythonOptions

    def __init__(self, name: str, options: PythonOptions, env: ConnectorEnv) -> None:
        self.name = name
        self.options = options
        self.env = env
        self._tools: list[Tool] = []
        self._resources: list[Resource] = []
        self._templates: list[ResourceTemplate] = []
        self._prompts: list[Prompt] = []
        self._module: ModuleType | None = None

    async def open(self) -> None:
        """Import the module and collect its definitions.

        Raises:
            ConfigError: the module or file cannot be found or fails to import (code is configuration: the
                server refuses to start rather than retrying it).
        """
        self._module = self._import()
        self._scan()

    def _scan(self) -> None:
        # Re-read on every catalog rebuild, so a module that adds definitions at run time is picked up.
        self._tools, self._resources, self._templates, self._prompts = [], [], [], []
        module = self._module
        if module is None:
            return
        exported = getattr(module, "__all__", None)
        seen: set[int] = set()
        for name, value in list(vars(module).items()):
            definition: Any = getattr(value, ATTR, None)
            if definition is None or id(definition) in seen:  # one function bound to two names counts once
                continue
            # What the module defines, or lists in __all__; a decorated function it merely imports is not
            # published twice by every module that imports it.
            if exported is not None and name not in exported:
                continue
            if exported is None and getattr(value, "__module__", module.__name__) != module.__name__:
                continue
            seen.add(id(definition))
            if isinstance(definition, Tool):
                self._tools.append(definition)
            elif isinstance(definition, Resource):
                self._resources.append(definition)
            elif isinstance(definition, ResourceTemplate):
                self._templates.append(definition)
            elif isinstance(definition, Prompt):
                self._prompts.append(definition)

    def _import(self) -> ModuleType:
        if self.options.module is not None:
            try:
                return importlib.import_module(self.options.module)
            except Exception as exc:
                raise ConfigError(f"module: cannot import '{self.options.module}': {exc!r}", key="module") from exc
        assert self.options.path is not None
        path = (self.env.base_dir / self.options.path).resolve()
        if not path.is_file():
            raise ConfigError(f"path: '{self.options.path}' is not a file (looked at {path})", key="path")
        module_name = f"patchbay_user_{self.name}_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"path: cannot load {path} as Python", key="path")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise ConfigError(f"path: {Path(path).name} failed to import: {exc!r}", key="path") from exc
        return module

    def tools(self) -> Sequence[Tool]:
        self._scan()
        return self._tools

    def resources(self) -> Sequence[Resource]:
        return self._resources

    def resource_templates(self) -> Sequence[ResourceTemplate]:
        return self._templates

    def prompts(self) -> Sequence[Prompt]:
        return self._prompts

    async def health(self) -> Health:
        return Health(True)

    async def close(self) -> None:
        return None
