"""Hand-written PyTorch modules, written the way people write them, that the compiled
models are measured against. The torchvision-layout ones (ResNet, ViT) use torchvision's
exact parameter names and the compiled modules load their state_dicts strictly (the specs'
checkpoint sections); the nanoGPT-layout GPT-2 maps a compiled state_dict onto its names."""
