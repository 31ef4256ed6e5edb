"""Templates: variables, loops, defaults, includes and host facts, expanded into a plain
topology before the schema sees it (expand.py), with the closed expression language of
``${...}`` (expr.py, strings.py)."""
