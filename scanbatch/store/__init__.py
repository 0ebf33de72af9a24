"""The job store: one DuckDB file owned by one process."""

from scanbatch.store.db import Database
from scanbatch.store.jobs import ROLES, WRITE_ROLES, ApiKey, JobStore, hash_token, parse_job_id

__all__ = ["ROLES", "WRITE_ROLES", "ApiKey", "Database", "JobStore", "hash_token", "parse_job_id"]
