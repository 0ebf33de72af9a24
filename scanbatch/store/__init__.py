"""The job store: one DuckDB file owned by one process."""

from scanbatch.store.db import Database
from scanbatch.store.jobs import ApiKey, JobStore, hash_token, parse_job_id

__all__ = ["ApiKey", "Database", "JobStore", "hash_token", "parse_job_id"]
