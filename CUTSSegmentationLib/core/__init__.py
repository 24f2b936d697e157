"""What every stage shares: typed errors, the image type, progress and cancel, the torch device."""
