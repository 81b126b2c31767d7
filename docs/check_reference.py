"""After a docs build: every public name (the ``__all__`` of each public module) is in the API reference.

    python docs/check_reference.py docs/_build/html

A name counts as documented under the module that defines it (``wscodec.Connection`` is documented as
``wscodec.connection.Connection``); the kernels are documented from the pure twin (``wscodec._pure``).
Exit status 1 with the list of names missing.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from sphinx.util.inventory import InventoryFile

PUBLIC = [
    "wscodec",
    "wscodec.asyncio",
    "wscodec.asyncio.busy_poll",
    "wscodec.connection",
    "wscodec.events",
    "wscodec.errors",
    "wscodec.frames",
    "wscodec.extensions",
    "wscodec.handshake",
    "wscodec.server_hooks",
    "wscodec.basic_auth",
    "wscodec.asgi",
    "wscodec.compression",
    "wscodec.client_network",
    "wscodec.transports",
    "wscodec.sync",
    "wscodec.sync.client",
    "wscodec.sync.server",
    "wscodec.sync.websocket",
    "wscodec.workers",
    "wscodec.broker",
    "wscodec.broker.redis",
    "wscodec.broker.channels",
]


def main(build: str) -> int:
    with open(Path(build) / "objects.inv", "rb") as stream:
        inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
    documented = {name for entries in inventory.values() for name in entries}
    missing = []
    for module_name in PUBLIC:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            candidates = {f"{module_name}.{name}"}
            home = getattr(obj, "__module__", None)
            if isinstance(home, str):
                candidates.add(f"{home}.{getattr(obj, '__qualname__', name)}")
            candidates.add(f"wscodec._pure.{name}")
            if not candidates & documented:
                missing.append(f"{module_name}.{name}")
    if missing:
        print("not in the API reference:", *missing, sep="\n  ")
        return 1
    print(f"API reference: every public name of {len(PUBLIC)} modules is documented")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/_build/html"))
