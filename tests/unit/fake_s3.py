"""What the trigger's tests stand in for aiobotocore's S3 with: a GetObject answer's ``Body``."""

from __future__ import annotations


class AsyncBody:
    """An object's bytes as aiobotocore's ``StreamingBody`` serves them: ``async with``, then ``read()``."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aenter__(self) -> AsyncBody:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read(self) -> bytes:
        return self.data
