"""The server entry point: `python server.py [--host H] [--port P]` is `scanbatch serve`.
The app itself comes from the factory `scanbatch.web.create_app(settings)`."""

from __future__ import annotations

import sys

from scanbatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
