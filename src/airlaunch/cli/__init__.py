"""``airlaunch``, the results CLI: the S3 store, the commands and the rendering, a module each."""

from airlaunch.cli.app import main

__all__ = ["main"]
