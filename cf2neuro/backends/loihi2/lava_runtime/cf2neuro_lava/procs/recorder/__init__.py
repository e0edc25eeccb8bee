"""A sink that keeps chosen steps of its input and writes them to a .npy at the end."""
