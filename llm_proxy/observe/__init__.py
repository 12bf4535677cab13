"""The observe plane: metrics and logs."""
