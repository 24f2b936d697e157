"""Inputs and outputs: read and validate images, check the memory budget, write label maps and results."""
