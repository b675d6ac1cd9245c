"""Live reload of the `--config` file: watch it (and SIGHUP), re-read it, and bring the hub's backends in
line with it without dropping a client.

Added servers start, removed ones stop, changed ones restart, unchanged ones keep their process and
session; connected clients hear `list_changed`. An invalid file is refused with the one-line config error
of start-up and the running config keeps serving. Gateway-level settings (`"gateway": {...}`: port,
auth, limits, profiles) are read at start only: a change there is logged as needing a restart.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path

import anyio
import watchfiles

from gateway.config.loader import ConfigError, GatewayConfig, load_config
from gateway.routing.hub import Hub, loaded_config

logger = logging.getLogger("mcp_gateway.reload")


class Reloader:
    """Applies a new version of one config file to one running hub."""

    def __init__(self, hub: Hub, file: str | Path, environ: Mapping[str, str] = os.environ) -> None:
        self.hub = hub
        self.file = Path(file)
        self.environ = dict(environ)
        self._lock = anyio.Lock()  # one reload at a time (a SIGHUP during a file change waits)

    async def reload(self) -> bool:
        """Re-read the file and apply it; False when it was refused (the running config stays)."""
        async with self._lock:
            return await self._reload()

    async def _reload(self) -> bool:
        try:
            config = load_config(self.file, self.environ)
        except ConfigError as error:
            logger.error("config error: %s (reload refused, the running config keeps serving)", error)
            return False
        except OSError as error:
            logger.error("config error: %s: %s (reload refused, the running config keeps serving)", self.file, error)
            return False
        await self.apply(config)
        return True

    async def apply(self, config: GatewayConfig) -> None:
        hub = self.hub
        loaded = loaded_config(config)
        if loaded["hash"] == hub.loaded["hash"]:
            logger.debug("config reload: %s unchanged", self.file)
            return
        if config.gateway != hub.settings:
            changed = sorted(
                key
                for key in type(config.gateway).model_fields
                if getattr(config.gateway, key) != getattr(hub.settings, key)
            )
            logger.warning(
                "config reload: gateway settings changed (%s); they take effect after a restart", ", ".join(changed)
            )
        old = {backend.name: backend.config for backend in hub.backends}
        new = config.enabled_servers
        removed = [name for name in old if name not in new]
        added = [name for name in new if name not in old]
        changed_servers = [name for name in new if name in old and new[name] != old[name]]
        for name in removed + changed_servers:
            hub.remove_backend(name)
        for name in changed_servers + added:
            hub.add_backend(name, new[name])
        hub.config = config
        hub.loaded = loaded
        logger.info(
            "config reloaded from %s: added %s, removed %s, restarted %s, kept %d (hash %s)",
            self.file,
            added or "none",
            removed or "none",
            changed_servers or "none",
            len(new) - len(added) - len(changed_servers),
            loaded["hash"][:12],
        )
        await hub.announce()  # the removed tools are gone now; the new ones announce themselves once up

    async def watch(self) -> None:
        """Reload on SIGHUP and whenever the file's directory changes: an edit in place, an editor's atomic
        replace, or a Kubernetes ConfigMap's symlink swap (a reload of identical content does nothing)."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._on_sighup)
            async for _changes in watchfiles.awatch(self.file.absolute().parent, debounce=200):
                await self.reload()

    async def _on_sighup(self) -> None:
        with anyio.open_signal_receiver(signal.SIGHUP) as signals:
            async for _signal in signals:
                logger.info("SIGHUP: reloading %s", self.file)
                await self.reload()
