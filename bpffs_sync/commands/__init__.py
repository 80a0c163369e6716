"""One module per CLI command beyond run: verify, status, clean, demo."""
