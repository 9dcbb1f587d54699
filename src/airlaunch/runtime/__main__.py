from airlaunch.runtime.entrypoint import cli

cli()
