"""LocalStack init hook (ready stage): create the results bucket airlaunch writes to.

LocalStack runs the Python files in /etc/localstack/init/ready.d inside its own process.
"""

import os

from localstack.aws.connect import connect_to

bucket = os.environ.get("AIRLAUNCH_BUCKET", "airlaunch-results")
s3 = connect_to().s3
if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
    s3.create_bucket(Bucket=bucket)
print(f"airlaunch: results bucket s3://{bucket} is ready")
