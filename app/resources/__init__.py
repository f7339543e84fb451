"""HTTP resources: thin layers that parse a request, call the store or the
task system, and shape the answer."""
