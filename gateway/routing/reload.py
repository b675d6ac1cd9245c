"""Live reload of the `--config` file: watch it (and SIGHUP), re-read it, and bring the running gateway in
line with it without dropping a client.

Servers: added ones start, removed ones stop, changed ones restart (their new process is started before the
old one stops), unchanged ones keep their process and session, and a change of tool overrides (`tools`) or
`clientScopedArguments` alone applies without a restart. The new backends are started first and the catalog
the new config would expose is computed: when tool names would clash (a rename, a namespace, a meta-tool's
name in search mode), the reload is refused like any invalid file, with the one-line config error of
start-up, the new processes stop and the running config keeps serving.

Gateway settings: tool search (`discovery`) and the status poll's interval are applied here; what lives in
the layers above (client keys and allow lists, redaction of configured secrets, profiles) is
applied by the `Prepare` hook `serve` passes in, which may refuse the new config with a `ConfigError`. Any
other gateway setting takes effect after a restart (logged). Connected clients hear `list_changed`.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import watchfiles

from gateway.backends.session import Backend
from gateway.config.features import META_TOOLS
from gateway.config.loader import ConfigError, GatewayConfig, ServerConfig, load_config
from gateway.routing.hub import Hub, loaded_config

logger = logging.getLogger("mcp_gateway.reload")

Commit = Callable[[], None]
Prepare = Callable[[GatewayConfig, Mapping[str, str]], Commit]
"""Check a new config for the layers above routing (raise `ConfigError` to refuse it) and return what
applies it there, called once the hub has taken it."""

APPLIED = frozenset({"auth", "profiles", "discovery", "status_interval"})  # other settings: after a restart
_RETUNED: dict[str, Any] = {"tools": {}, "client_scoped_arguments": {}}  # server fields applied without restarting it


def _process(server: ServerConfig) -> ServerConfig:
    """What a server's process depends on: its entry without the fields applied in the gateway."""
    return server.model_copy(update=_RETUNED)


class Reloader:
    """Applies a new version of one config file to one running hub."""

    def __init__(
        self,
        hub: Hub,
        file: str | Path,
        environ: Mapping[str, str] = os.environ,
        prepare: Prepare | None = None,
    ) -> None:
        self.hub = hub
        self.file = Path(file)
        self.environ = dict(environ)
        self.prepare = prepare
        self._lock = anyio.Lock()  # one reload at a time (a SIGHUP during a file change waits)

    async def reload(self) -> bool:
        """Re-read the file and apply it; False when it was refused (the running config stays)."""
        async with self._lock:
            try:
                config = load_config(self.file, self.environ)
                await self.apply(config)
            except ConfigError as error:
                logger.error("config error: %s (reload refused, the running config keeps serving)", error)
                return False
            except OSError as error:
                logger.error(
                    "config error: %s: %s (reload refused, the running config keeps serving)", self.file, error
                )
                return False
            return True

    async def apply(self, config: GatewayConfig) -> None:
        """Apply `config`, or raise `ConfigError` having changed nothing."""
        hub = self.hub
        loaded = loaded_config(config)
        if loaded["hash"] == hub.loaded["hash"]:
            logger.debug("config reload: %s unchanged", self.file)
            return
        commit = self.prepare(config, self.environ) if self.prepare is not None else None
        old = {backend.name: backend for backend in hub.backends}
        new = config.enabled_servers
        removed = [name for name in old if name not in new]
        added = [name for name in new if name not in old]
        restarted = [name for name in new if name in old and _process(new[name]) != _process(old[name].config)]
        retuned = [name for name in new if name in old and name not in restarted and new[name] != old[name].config]
        staged = await hub.stage({name: new[name] for name in restarted + added})
        search = config.gateway.discovery.mode == "search"
        would_be = [staged.get(name) or _retuned(old[name], new[name]) for name in new]
        conflicts = hub.catalog.conflicts_of(would_be, frozenset(META_TOOLS) if search else frozenset())
        if conflicts:
            hub.unstage(staged)
            where, problem = conflicts[0]
            raise ConfigError(self.file, where, problem)
        self._warn_restart_only(config)
        for name in removed + restarted:
            hub.remove_backend(name)
        for name in retuned:
            old[name].config = new[name]
        self._discovery(config)
        hub.published.interval = config.gateway.status_interval
        hub.config = config
        hub.loaded = loaded
        hub.adopt(staged, list(new))
        if commit is not None:
            commit()
        logger.info(
            "config reloaded from %s: added %s, removed %s, restarted %s, retuned %s, kept %d (hash %s)",
            self.file,
            added or "none",
            removed or "none",
            restarted or "none",
            retuned or "none",
            len(new) - len(added) - len(restarted) - len(retuned),
            loaded["hash"][:12],
        )
        if hub.discovery is not None:  # the new catalog's search index now, not on the first search
            await hub.discovery.index(hub.catalog.tools, hub.catalog.version)
        await hub.announce()

    def _discovery(self, config: GatewayConfig) -> None:
        """Tool search as the new config sets it: its index (and the meta-tools in or out of the lists)."""
        hub, settings = self.hub, config.gateway.discovery
        current = hub.discovery.settings if hub.discovery is not None else None
        wanted = settings if settings.mode == "search" else None
        if current == wanted:
            return
        if wanted is not None:
            from gateway.routing.search_index import ToolSearch  # numpy and the model: only in search mode

            hub.discovery = ToolSearch(settings)
        else:
            hub.discovery = None
        hub.catalog.reserved = frozenset(META_TOOLS) if wanted is not None else frozenset()
        hub.catalog.version += 1  # every list is answered afresh (with or without the meta-tools)

    def _warn_restart_only(self, config: GatewayConfig) -> None:
        settings = self.hub.settings
        changed = sorted(
            key
            for key in type(config.gateway).model_fields
            if key not in APPLIED and getattr(config.gateway, key) != getattr(settings, key)
        )
        if changed:
            logger.warning(
                "config reload: gateway settings changed (%s); they take effect after a restart", ", ".join(changed)
            )

    async def watch(self) -> None:
        """Reload on SIGHUP and whenever the file's directory changes: an edit in place, an editor's atomic
        replace, or a Kubernetes ConfigMap's symlink swap (a reload of identical content does nothing).
        Other files in that directory are not the config: a log or data file written there must not wake
        the watcher (nor watchfiles' own "change detected" line, which would wake it again when the log is
        there)."""
        logging.getLogger("watchfiles").setLevel(logging.WARNING)
        async with anyio.create_task_group() as group:
            group.start_soon(self._on_sighup)
            watched = self.file.absolute()
            async for _changes in watchfiles.awatch(
                watched.parent, watch_filter=_config_filter(watched.name), debounce=200, recursive=False
            ):
                await self.reload()

    async def _on_sighup(self) -> None:
        with anyio.open_signal_receiver(signal.SIGHUP) as signals:
            async for _signal in signals:
                logger.info("SIGHUP: reloading %s", self.file)
                await self.reload()


def _config_filter(name: str) -> Callable[[watchfiles.Change, str], bool]:
    """A watchfiles filter passing changes to the file `name` and to a ConfigMap's `..data` swap (its
    timestamped `..2026_…` directories and the `..data` symlink)."""

    def passes(_change: watchfiles.Change, path: str) -> bool:
        changed = Path(path).name
        return changed == name or changed.startswith("..")

    return passes


def _retuned(backend: Backend, server: ServerConfig) -> Backend:
    """`backend` as the catalog would see it under its new entry (for `conflicts_of`; the running one is
    not touched)."""
    view = copy.copy(backend)
    view.config = server
    return view
