"""Scoring and test data: segmentation metrics and synthetic phantoms with a known truth."""
