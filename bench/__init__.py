"""nncircuit's benchmark suite: `python bench/run.py [--quick] [--gpu] [--json out.json]`."""
