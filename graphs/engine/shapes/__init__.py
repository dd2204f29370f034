"""Built-in dialogue shapes, as YAML files."""
