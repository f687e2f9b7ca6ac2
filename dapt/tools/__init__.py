"""Library code of the command-line tools (tools/*.py are thin wrappers around these modules)."""
