"""One aiobotocore client per triggerer loop and connection, found without reading the connection again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from airlaunch.providers.airflow.hooks.launcher import shared_client


class Client:
    closed = False

    def __init__(self) -> None:  # botocore's event hooks, where the loop asks for kept connections
        self.meta = SimpleNamespace(events=SimpleNamespace(register=lambda *_, **__: None))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True


class Hook:
    """Like AwsGenericHook: region_name reads the Airflow connection (through the triggerer's supervisor)."""

    client_type = "s3"
    aws_conn_id = "airlaunch_aws"

    def __init__(self, opened: list[Client]) -> None:
        self._region_name = None
        self.opened = opened

    @property
    def region_name(self) -> str:
        raise AssertionError("looked the connection up again")

    async def get_async_conn(self) -> Any:
        client = Client()
        self.opened.append(client)
        return client


def test_every_trigger_gets_the_loop_s_one_client_without_a_connection_lookup() -> None:
    opened: list[Client] = []

    async def main() -> list[Any]:
        return await asyncio.gather(*(shared_client(Hook(opened)) for _ in range(50)))

    clients = asyncio.run(main())
    assert len(opened) == 1 and all(client is opened[0] for client in clients)


def test_the_loop_s_clients_are_closed_when_the_loop_ends() -> None:
    """asyncio.run ends by cancelling what still runs: the clients are closed then, as aiobotocore intends
    (a green make test ended with pages of "Unclosed client session" from clients left open)."""
    opened: list[Client] = []

    async def main() -> None:
        await shared_client(Hook(opened))
        await shared_client(Hook(opened), pool="launch")

    asyncio.run(main())
    assert len(opened) == 2 and all(client.closed for client in opened)
