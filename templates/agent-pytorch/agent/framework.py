"""What differs between the PyTorch and TensorFlow templates outside the network code.

Everything else in ``agent/`` (actions, preprocessing, config, the run loop) is shared by both.
"""

FRAMEWORK = "pytorch"
CHECKPOINT_SUFFIX = ".pt"  # torch.save of weights, optimizer state and counters
