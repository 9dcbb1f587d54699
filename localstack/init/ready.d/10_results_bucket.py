"""LocalStack init hook (ready stage): the results bucket, and the queue S3 notifies of status.json.

LocalStack runs the Python files in /etc/localstack/init/ready.d inside its own process.
As infra/template.yaml does on AWS: every status.json created under the bucket is announced
on the queue, which Airflow's triggerer long-polls (AIRLAUNCH_STATUS_QUEUE).
"""

import os

from localstack.aws.connect import connect_to

bucket = os.environ.get("AIRLAUNCH_BUCKET", "airlaunch-results")
queue = os.environ.get("AIRLAUNCH_STATUS_QUEUE", "airlaunch-status")
clients = connect_to()
s3, sqs = clients.s3, clients.sqs
if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
    s3.create_bucket(Bucket=bucket)
url = sqs.create_queue(
    QueueName=queue, Attributes={"VisibilityTimeout": "10", "MessageRetentionPeriod": "600"}
)["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
s3.put_bucket_notification_configuration(
    Bucket=bucket,
    NotificationConfiguration={
        "QueueConfigurations": [
            {
                "QueueArn": arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": "status.json"}]}},
            }
        ]
    },
)
print(f"airlaunch: results bucket s3://{bucket} is ready; status.json notifications go to {queue}")
