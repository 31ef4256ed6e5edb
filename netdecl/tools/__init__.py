"""What people use around the engine: verify (probes), explain, graph, sandbox, and the plan
rendered as text or JSON."""
