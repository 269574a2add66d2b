"""nim-workflow."""
