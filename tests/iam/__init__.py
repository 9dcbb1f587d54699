"""Least privilege, tested: record the AWS calls the code makes, evaluate them against the template's policies."""
