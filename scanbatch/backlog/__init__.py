"""The backlog: whole shelves read through Google's Batch API at the batch price.

`google` is the thin wrapper of the google-genai SDK's Files and Batch APIs that the rest of
the backlog calls (upload a JSONL file, create, find, poll, cancel and delete a batch, download
and read its results); scanbatch.testing.fake_batch is the loopback fake it is tested
against."""
