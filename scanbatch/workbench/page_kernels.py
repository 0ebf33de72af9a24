"""The kernel managers of the workbench page's Voilà (named in voila.json): a stop at any
moment is quiet.

Two things printed tracebacks when Voilà stopped while one of its kernels was starting (right
after start, or after a page opened: the preheated pool starts the next kernel at once):
- jupyter_client shuts down the kernels it is still starting too, by ids jupyter_server does
  not know yet, which raises 404 ("Kernel does not exist") out of `shutdown_all`. Voilà runs
  that shutdown after its event loop stopped, so those starts can never finish: such a kernel
  is killed here instead (there is nothing in it to save).
- Voilà removes its folder of connection files before it stops its kernels, and a kernel
  still starting then fails to write its own (a FileNotFoundError traceback). The page's
  kernels keep theirs in a folder of this manager, removed once they are stopped.
- every shutdown begins with SIGINT, and a kernel still importing ipykernel dies of it with a
  KeyboardInterrupt traceback; and a shutdown request that reaches a kernel while it answers an
  execute request closes the socket under that answer (a ZMQError traceback, seen once in CI).
  A page's kernel holds nothing (the server keeps every record), so it is killed instead."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from typing import Any

from jupyter_client.manager import KernelManager
from jupyter_server.services.kernels.kernelmanager import (
    AsyncMappingKernelManager,
    ServerKernelManager,
)
from traitlets import default


class PageKernel(ServerKernelManager):
    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()

    async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        await super().shutdown_kernel(now=True, restart=restart)


class PageKernels(AsyncMappingKernelManager):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._managers: dict[str, KernelManager] = {}
        self.connection_dir = tempfile.mkdtemp(prefix="scanbatch-page-kernels-")

    @default("kernel_manager_class")
    def _default_kernel_manager_class(self) -> str:
        return f"{__name__}.PageKernel"

    def pre_start_kernel(
        self, kernel_name: str | None, kwargs: Any
    ) -> tuple[KernelManager, str, str]:
        km, name, kernel_id = super().pre_start_kernel(kernel_name, kwargs)
        # jupyter_client keeps a starting kernel's manager nowhere else; started ones are gone.
        self._managers = {k: m for k, m in self._managers.items() if k in self._pending_kernels}
        self._managers[kernel_id] = km
        return km, name, kernel_id

    async def shutdown_all(self, now: bool = False) -> None:
        starting = [kid for kid in list(self._pending_kernels) if kid not in self._kernels]
        managers = [self._managers[kid] for kid in starting if kid in self._managers]
        for kid in starting:
            self._pending_kernels.pop(kid, None)
        await asyncio.gather(*(km.shutdown_kernel(now=True) for km in managers if km.has_kernel))
        await super().shutdown_all(now=now)
        self._managers.clear()
        shutil.rmtree(self.connection_dir, ignore_errors=True)
