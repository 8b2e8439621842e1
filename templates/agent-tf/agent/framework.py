"""What differs between the PyTorch and TensorFlow templates outside the network code.

Everything else in ``agent/`` (actions, preprocessing, config, the run loop) is shared by both.
"""

FRAMEWORK = "tensorflow"
CHECKPOINT_SUFFIX = ".npz"  # numpy archive of the Keras weights, optimizer state and counters
