"""Commands that act on the store: directly when no server holds it, else through the running
server's /admin routes, as the local owner of the data dir (its address and a local
stationManager token are in `<data dir>/server.json`, readable only by the data dir's owner)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from scanbatch import server_file
from scanbatch.cli import settings
from scanbatch.errors import ScanbatchError, StoreLocked
from scanbatch.settings import Settings
from scanbatch.store import JobStore

if TYPE_CHECKING:
    import requests

T = TypeVar("T")


class ServerUnreachable(ScanbatchError):
    pass


class ServerClient:
    """The running server, as the local owner of its data dir."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    @classmethod
    def from_runtime_file(cls, s: Settings) -> ServerClient | None:
        found = server_file.read(s.data_dir)
        return None if found is None else cls(found.url, found.token)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of the server's answer; a ScanbatchError with its message on >= 400."""
        return _body(self._request(method, path, **kwargs))

    def stream(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The server's answer with its body not read yet (`iter_content`, a download); a
        ScanbatchError with its message on >= 400. Close it (`with`) when done."""
        return self._request(method, path, stream=True, **kwargs)

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        import requests

        kwargs.setdefault("timeout", 30)  # a long call (a first prune) gives its own
        try:
            r = requests.request(
                method,
                self.url + path,
                headers={"Authorization": f"Bearer {self.token}"},
                **kwargs,
            )
        except requests.RequestException as exc:
            raise ServerUnreachable(f"The server at {self.url} did not answer: {exc}") from None
        if r.status_code >= 400:
            message = _body(r).get("message")
            r.close()
            raise ScanbatchError(f"{message} (HTTP {r.status_code} from {self.url})")
        return r


def _body(r: requests.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return {"message": r.text[:200]}


def local_or_server(local: Callable[[JobStore], T], remote: Callable[[ServerClient], T]) -> T:
    s = settings()
    try:
        store = JobStore.open(s.store_path)
    except StoreLocked as locked:
        client = ServerClient.from_runtime_file(s)
        if client is None:  # held by something that is not our server: say so
            raise
        try:
            return remote(client)
        except ServerUnreachable as exc:  # a stale file from a killed server
            raise ScanbatchError(f"{locked.message} ({exc.message})") from None
    try:
        return local(store)
    finally:
        store.close()
