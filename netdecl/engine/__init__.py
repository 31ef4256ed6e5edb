"""The reconciler: the application service (service.py) the CLI and the API call, and under it
observe (observer.py), plan (planner/, pure), apply, verify and roll back (applier.py), one
action on the host (executor.py) with its bookkeeping in the ownership record (claims.py),
ownership policy (ownership.py), which added addresses are announced (announcements.py) and
when new veths come up (linkup.py). What it keeps on disk (records, journals, the lock, the plan
file) is state/'s. Talks to a machine only through the Host protocol (netdecl.backends.host)."""
