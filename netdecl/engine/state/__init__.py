"""What netdecl keeps on disk, and how far it trusts what it reads back.

Everything under the state dir (statedir.py: /var/lib/netdecl, or --state-dir): the lock
(lock.py), each topology's ownership record (record.py), the journal of an apply in progress or
cut short (journal.py), the room its rollback may need (reserve.py) and what journals left
behind say (unfinished.py), the markers of an apply waiting for `netdecl confirm` (confirm.py);
and the plan file, the one format of a plan written down (planfile.py: `plan --out`,
`plan --json`, the journal's intent lines).

The state dir is trusted only as far as statedir.secure proves nobody else can write it, and
even then nothing read back is: every name from a record, journal or saved plan is checked with
the topology format's own rules (untrusted.py) before it reaches a path, a netlink request or
nft. Orchestration (what to do with it) is the engine's, above this package.
"""

# How long apply, destroy and rollback wait for the host lock (lock.py) unless told otherwise
# (--lock-timeout, lock_timeout=): the one definition. Here rather than in lock.py so that the
# command line can show it in --help without importing the state dir's code.
LOCK_TIMEOUT = 5.0
