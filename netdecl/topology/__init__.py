"""The file format: safe YAML with positions, the JSON Schema, semantic checks, the model built
from a file and the file written back from a model (show). Never imports the engine."""
