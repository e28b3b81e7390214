"""The parity engine: do the scratch side and the torch twin compute the same thing, tensor by tensor?"""
