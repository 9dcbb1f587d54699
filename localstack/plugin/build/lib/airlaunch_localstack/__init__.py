"""airlaunch's LocalStack plugin: durable local results (see durable_s3)."""
