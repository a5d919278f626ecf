"""The PyTorch backend: readable standalone source (`codegen`) from one lowering per op (`ops`)."""
