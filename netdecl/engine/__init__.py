"""The reconciler: the application service (service.py) the CLI calls, and under it observe,
plan (planner/, pure), the plan file, execute, apply/rollback, journal, ownership record and
policy, state dir, lock and confirmation. Talks to a machine only through the Host protocol
(netdecl.backends.host)."""
