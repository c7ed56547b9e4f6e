"""A FastAPI application (an asyncio program) that keeps its counter in a trioraft cluster.

Start a cluster (the README's "Three processes" section), then:

    pip install fastapi uvicorn
    TRIORAFT_CLUSTER=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 \\
        uvicorn examples.fastapi_app:app --port 8000
    curl -X POST localhost:8000/counter/add/5     # {"value": 5}, applied exactly once
    curl localhost:8000/counter                   # {"value": 5}, linearizable

The application opens one :func:`trioraft.open_client` for its whole life (FastAPI's
lifespan) and shares it between requests: the client is safe for concurrent use, follows
the leader, and retries a write through leader changes without applying it twice.
``TRIORAFT_SECRET_FILE`` names the cluster's secret file, if it has one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

import trioraft


def create_app(cluster: Sequence[str], secret: bytes | None = None) -> FastAPI:
    """The application, as a client of the servers at ``cluster`` (``"host:port"``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with trioraft.open_client(list(cluster), secret=secret) as client:
            app.state.raft = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/counter/add/{amount}")
    async def add(amount: int) -> dict[str, int]:
        return {"value": await app.state.raft.write(amount)}

    @app.get("/counter")
    async def value() -> dict[str, int]:
        return {"value": await app.state.raft.read(None)}

    return app


def _from_environment() -> FastAPI:
    cluster = os.environ.get("TRIORAFT_CLUSTER", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")
    secret_file = os.environ.get("TRIORAFT_SECRET_FILE")
    secret = Path(secret_file).read_bytes().strip() if secret_file else None
    return create_app(cluster.split(","), secret)


app = _from_environment()
