"""``type = "python"``: tools, resources and prompts written with ``@tool``, ``@resource`` and ``@prompt``."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import Field, model_validator

from patchbay.connectors.base import ConnectorEnv, ConnectorOptions, Health
from patchbay.decorators import ATTR
from patchbay.definitions import Prompt, Resource, ResourceTemplate, Tool
from patchbay.errors import ConfigError

log = logging.getLogger("patchbay.connectors.python")


class PythonOptions(ConnectorOptions):
    path: str | None = None
    """A .py file, relative to the config file."""
    module: str | None = None
    """An importable module name, e.g. ``acme.tools``."""
    watch: bool = False
    """Reload the module when its file changes (checked every ``watch_seconds``), for development and for tools
    edited while the server runs. Without it, ``patchbay serve`` reloads on SIGHUP."""
    watch_seconds: float = Field(1.0, ge=0.1, le=60)

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
        self._stamp: tuple[int, int] | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Import the module and collect its definitions.

        Raises:
            ConfigError: the module or file cannot be found or fails to import (code is configuration: the
                server refuses to start rather than retrying it).
        """
        self._module = self._import()
        self._stamp = self._file_stamp()
        self._scan()
        if self.options.watch and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name=f"patchbay-watch-{self.name}")

    async def reload(self) -> bool:
        """Import the module again (``path``: the file as it is now; ``module``: ``importlib.reload``).

        On failure the previous definitions stay and the error is logged: an edit with a syntax error never
        takes the server down.
        """
        self._stamp = self._file_stamp()
        try:
            module = self._import() if self.options.path is not None else self._reimport()
        except ConfigError as exc:
            log.error("connector '%s': reload failed, keeping the previous definitions: %s", self.name, exc)
            return False
        self._module = module
        self._scan()
        log.info("connector '%s': reloaded %s", self.name, self.options.path or self.options.module)
        return True

    def _reimport(self) -> ModuleType:
        if self._module is None:
            return self._import()
        try:
            return importlib.reload(self._module)
        except Exception as exc:
            raise ConfigError(f"module: cannot reload '{self.options.module}': {exc!r}", key="module") from exc

    def _file_stamp(self) -> tuple[int, int] | None:
        """(mtime in ns, size) of the module's file: a change in either means it was written."""
        file = self._file()
        try:
            info = os.stat(file) if file is not None else None
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size) if info is not None else None

    def _file(self) -> Path | None:
        if self.options.path is not None:
            return (self.env.base_dir / self.options.path).resolve()
        origin = getattr(self._module, "__file__", None)
        return Path(origin) if origin else None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.options.watch_seconds)
            stamp = self._file_stamp()
            if stamp is not None and stamp != self._stamp and await self.reload():
                self.env.on_change()

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
        previous = sys.modules.get(module_name)  # a reload that fails leaves the loaded module in place
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            if previous is not None:
                sys.modules[module_name] = previous
            else:
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
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
