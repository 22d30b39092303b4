"""A small TCP balancer: one address in front of several servers.

`python -m tests.distributed.balancer HOST:PORT BACKEND:PORT...` accepts connections
and pipes each to the next backend in turn that accepts within a second; a backend
that refuses or times out is skipped for that connection, so clients see one address
while any backend is up.
"""

from __future__ import annotations

import asyncio
import itertools
import sys

CONNECT_TIMEOUT = 1.0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def main(listen: str, backends: list[str]) -> None:
    turn = itertools.cycle(range(len(backends)))

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        first = next(turn)
        for i in range(len(backends)):
            host, port = backends[(first + i) % len(backends)].rsplit(":", 1)
            try:
                server_r, server_w = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port)), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError):
                continue
            await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
            return
        client_w.close()

    async def serve() -> None:
        host, port = listen.rsplit(":", 1)
        server = await asyncio.start_server(handle, host, int(port), backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
