"""What people use around the engine: verify (probes), explain, graph, sandbox, the plan
rendered as text or JSON (render.py), and the terminal it is shown on (console.py)."""
