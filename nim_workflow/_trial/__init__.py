"""Trial definitions: the typed model, the YAML loader and validator, the bundled files."""
