"""The pieces of `benchmarks/compare.py`: one module per peer, the shared measurements, and the report table."""
