"""`netdecl agent`: the GitOps loop. Applies the topologies, then keeps the host matching them
from kernel events and file changes, through the service's normal apply (engine/service.py).

runner.py is the loop; events.py the netlink subscriptions, files.py the file watch,
backoff.py the per-object back-off against another controller, metrics.py the Prometheus
metrics, log.py the log lines. A layer of its own between cli and tools (pyproject.toml).
"""
