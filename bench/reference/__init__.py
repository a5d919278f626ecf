"""Hand-written PyTorch modules, written the way people write them, that the compiled
models are measured against; each file also maps a compiled state_dict onto its names."""
