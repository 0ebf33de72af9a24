"""The music director's workbench: ipywidgets served as a page by Voilà (or run in JupyterLab),
talking to the scanbatch server only through `scanbatch.client`."""

from scanbatch.workbench.app import SOCKET_CAP_BYTES, Workbench

__all__ = ["SOCKET_CAP_BYTES", "Workbench"]
