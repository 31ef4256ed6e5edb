"""Observe, plan, execute, apply, journal, ownership record, lock and confirmation: the
reconciler itself. Talks to the kernel only through netdecl.backends."""
