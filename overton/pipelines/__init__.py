"""Build steps (raw -> dataset version) and the executors that run them."""
