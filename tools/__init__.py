"""Videos, nothing about models: open, probe, decode exact frames, resize, encode JPEG."""
