"""The job store: one DuckDB file owned by one process."""

from scanbatch.store.db import Database, parse_job_id
from scanbatch.store.jobs import JobStore
from scanbatch.store.keys import ApiKey, KeyStore, hash_token

__all__ = ["ApiKey", "Database", "JobStore", "KeyStore", "hash_token", "parse_job_id"]
