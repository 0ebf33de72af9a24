"""Stand-ins for what tests and benchmarks cannot use for real: a loopback fake of Google's
Gemini endpoint (the real google-genai SDK talks to it), fake extractors registered as plugins,
images made in memory, and a real scanbatch server (or the `make run` launcher) started in a
subprocess. Shipped in the package so that benchmarks need not import the tests."""
