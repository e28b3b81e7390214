"""MNIST: fetched, verified, loaded, and turned into the arrays both sides train on."""
