#!/usr/bin/python
# Copyright: netdecl developers
# SPDX-License-Identifier: Apache-2.0 (as netdecl itself: see its LICENSE)
"""netdecl.netdecl.topology: make a managed host's networking match a netdecl topology.

Runs on the managed host and imports netdecl there, in-process, through the one adapter
below (netdecl_calls): nothing is parsed from command output. ``changed``, check mode and the
diff all come from netdecl's plan, the same one the apply executes.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: topology
short_description: Make a host's network namespaces, links, routes and NAT match a netdecl topology
version_added: "0.1.0"
description:
  - Plans the changes that make the managed host match a netdecl topology (YAML), then applies
    them. netdecl verifies the result by reading the kernel again, and rolls the host back to
    exactly its state before the task when any action fails.
  - C(changed) is true exactly when the plan has actions; it is computed from the plan itself,
    never from text. A second run of an unchanged task therefore reports C(changed=false).
  - In check mode only the plan is made; nothing on the host changes. Check mode fails where
    the real run would refuse (an invalid topology, objects netdecl does not own).
  - In diff mode the plan is the diff (C(prepared)), one line per action as C(netdecl plan)
    prints it.
  - With O(verify=true) the topology's C(probes) run with real traffic right after the apply,
    while netdecl still holds the host lock and the apply's journal; if any probe fails the
    apply is rolled back and the task fails.
  - netdecl never changes or deletes an object it did not create; see the netdecl README.
requirements:
  - netdecl installed for the Python interpreter that Ansible uses on the managed host (set
    C(ansible_python_interpreter) to it, for example the venv netdecl was installed into).
  - root on the managed host (CAP_NET_ADMIN and CAP_SYS_ADMIN), for example C(become=true).
  - C(ip) (iproute2) on the managed host, and C(nft) (nftables) for topologies with NAT.
options:
  src:
    description:
      - Path of a topology file on the managed host.
      - Exactly one of O(src) and O(content) is required.
    type: path
  vars:
    description:
      - Values for the topology template's C(vars) (as C(netdecl apply --var NAME=VALUE));
        they beat the file's defaults.
      - O(src) may also be a directory, read as one topology, or a file with C(include).
    type: dict
  content:
    description:
      - The topology as YAML text, for example from the C(template) lookup.
      - Problems in it are reported as C(<content>:LINE:COL).
      - Exactly one of O(src) and O(content) is required.
    type: str
  state:
    description:
      - V(present) makes the host match the topology (C(netdecl apply)).
      - V(absent) removes everything the topology owns and restores the root sysctls it
        changed (C(netdecl destroy)); only the topology's C(name) is used.
    type: str
    choices: [present, absent]
    default: present
  state_dir:
    description:
      - netdecl's state directory on the managed host (ownership records, journal, lock).
      - Defaults to E(NETDECL_STATE_DIR), else C(/var/lib/netdecl).
    type: path
  sandbox:
    description:
      - Run inside the persistent netdecl sandbox of this name (a private network and mount
        namespace, created if missing) instead of the host's own network, as
        C(netdecl --sandbox NAME) does. For rehearsals; the host's network is untouched.
    type: str
  adopt:
    description:
      - Take over declared objects that exist but netdecl did not create.
      - Only objects that belong to nobody and are compatible with the declaration are
        adopted (same kind; a veth whose peer is the declared one; a namespace holding only
        adopted objects); the plan shows them as C(= adopt). Adopted objects are then owned,
        and O(state=absent) removes them. Without adoption such objects are conflicts and the
        task fails with nothing changed.
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds to wait for another netdecl apply, destroy or rollback on the host to finish.
    type: float
    default: 5.0
  confirm_timeout:
    description:
      - After applying and verifying, wait this many seconds for C(netdecl confirm) on the
        managed host and roll back without it (for changes that may cut the connection
        Ansible uses). Run the task with C(async) and C(poll=0), then confirm from a later
        task once the host is reachable again.
    type: float
  verify:
    description:
      - Run the topology's C(probes) with real traffic after the apply and roll the apply
        back if any fails. The topology must have probes.
      - Ignored for O(state=absent) and in check mode.
    type: bool
    default: false
  probe_timeout:
    description:
      - Seconds each probe of O(verify) may take.
    type: float
    default: 2.0
attributes:
  check_mode:
    description: Plans only, changing nothing; changed says whether the real run would.
    support: full
  diff_mode:
    description: The plan, one line per action, is the diff (also in check mode).
    support: full
notes:
  - netdecl's exit statuses are returned as RV(exit_status) when the task fails
    (1 failure rolled back, 3 invalid topology, 4 rollback incomplete).
author:
  # validate-modules wants "Name (@github-handle)": netdecl has no public home (yet) to name
  - netdecl developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Apply the overlay rendered for this host, kept only if its probes pass
  netdecl.netdecl.topology:
    content: "{{ lookup('ansible.builtin.template', 'overlay.yaml.j2') }}"
    verify: true
  become: true

- name: Apply a topology file that is already on the host
  netdecl.netdecl.topology:
    src: /etc/netdecl/docker-bridge.yaml
    state_dir: /var/lib/netdecl

- name: One templated file for the whole fleet, this host's values from its inventory
  netdecl.netdecl.topology:
    src: /etc/netdecl/star.yaml
    vars:
      n: "{{ containers | default(10) }}"

- name: Drift check (run with --check --diff; changed means the host drifted)
  netdecl.netdecl.topology:
    src: /etc/netdecl/docker-bridge.yaml
  check_mode: true
  register: drift

- name: Rehearse in a sandbox (the host's own network is untouched)
  netdecl.netdecl.topology:
    src: /etc/netdecl/docker-bridge.yaml
    sandbox: rehearsal

- name: Remove everything the topology owns
  netdecl.netdecl.topology:
    src: /etc/netdecl/docker-bridge.yaml
    state: absent

- name: A change that might cut the connection - roll back unless confirmed within 60 s
  netdecl.netdecl.topology:
    src: /etc/netdecl/uplink.yaml
    confirm_timeout: 60
  async: 90
  poll: 0
  register: risky
- name: Wait until the host answers again
  ansible.builtin.wait_for_connection:
    timeout: 50
- name: Confirm, so the change stays
  ansible.builtin.command: netdecl confirm --name uplink
  changed_when: true
"""

RETURN = r"""
changed:
  description: Whether the plan had actions (in check mode, whether a real run would change the
    host).
  returned: always
  type: bool
topology:
  description: The topology's name.
  returned: when the topology could be read
  type: str
  sample: fleet-overlay
plan:
  description:
    - The plan as data, as C(netdecl plan --json) prints it. In check mode the plan a real run
      would execute; otherwise the plan that was executed (empty when nothing changed).
    - C(actions) is a list of dicts with C(op) (create, delete, modify, replace), C(type),
      C(key), C(object), C(before), C(after), C(changes) and C(why).
  returned: when a plan was made
  type: dict
  sample: {"topology": "fleet-overlay", "summary": {"add": 3, "change": 0, "destroy": 0},
           "actions": [{"op": "create", "type": "namespace", "object": "namespace pod-1"}],
           "conflicts": [], "notes": []}
summary:
  description: Counts of the plan, a replace counting as one add and one destroy.
  returned: when a plan was made
  type: dict
  sample: {"add": 3, "change": 1, "destroy": 0}
probes:
  description: The results of the probes run for O(verify), as C(netdecl verify --json) gives them.
  returned: when O(verify=true) and the apply got as far as the probes
  type: list
  elements: dict
recovered:
  description: Topologies whose interrupted earlier apply was rolled back before this one.
  returned: when not in check mode
  type: list
  elements: str
notices:
  description: Lines netdecl addressed to people while it worked (confirmation waits).
  returned: when there were any
  type: list
  elements: str
diagnostics:
  description: "Every problem of an invalid topology, as C(FILE:LINE:COL: message)."
  returned: when the topology is invalid
  type: list
  elements: str
exit_status:
  description: The exit status the netdecl command would have had (1, 3 or 4).
  returned: on failure
  type: int
"""

# Ansible reads the documentation above without importing the module: it comes first.
import os  # noqa: E402
import sys  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

CONTENT_NAME = "<content>"  # stands for the content text in FILE:LINE:COL messages

try:
    import netdecl

    NETDECL_MISSING = False
except ImportError:  # main() says so in one message, naming the Python that lacks it
    netdecl = None
    NETDECL_MISSING = True


def netdecl_calls():
    """Everything this module asks of netdecl, in one place: netdecl's public Python API
    (netdecl.api, re-exported as netdecl.*), sandboxes and probes included, and nothing else of
    netdecl. Results come back as data (Plan objects, probe results), never as text to
    parse."""
    def load(src, content, variables=None):
        return netdecl.load(src, variables=variables) if src is not None else \
            netdecl.load(text=content, name=CONTENT_NAME, variables=variables)

    def plan(topology, root, adopt):
        return netdecl.plan(topology, state_dir=root, adopt=adopt)

    def plan_destroy(name, root):
        return netdecl.plan(netdecl.Topology(name=name), state_dir=root)

    def apply(topology, root, lock_timeout, confirm_timeout, gate, notice, planned, adopt):
        return netdecl.apply(topology, state_dir=root, lock_timeout=lock_timeout,
                             confirm_timeout=confirm_timeout, adopt=adopt, gate=gate,
                             events=netdecl.Events(notice=notice, planned=planned))

    def destroy(name, root, lock_timeout, notice, planned):
        return netdecl.destroy(name, state_dir=root, lock_timeout=lock_timeout,
                               events=netdecl.Events(notice=notice, planned=planned))

    return SimpleNamespace(
        version=netdecl.__version__, load=load, plan=plan, plan_destroy=plan_destroy,
        apply=apply, destroy=destroy, state_dir=lambda path: path,
        enter_sandbox=netdecl.enter_sandbox, probe_gate=netdecl.probe_gate,
        plan_data=lambda plan: plan.to_json(),
        plan_text=lambda plan: plan.text(),
        InvalidTopology=netdecl.InvalidTopology, NetdeclError=netdecl.NetdeclError,
        PlanConflicts=netdecl.PlanConflicts,
    )


ARGUMENT_SPEC = dict(
    src=dict(type="path"),
    content=dict(type="str"),
    vars=dict(type="dict"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    state_dir=dict(type="path"),
    sandbox=dict(type="str"),
    adopt=dict(type="bool", default=False),
    lock_timeout=dict(type="float", default=5.0),
    confirm_timeout=dict(type="float"),
    verify=dict(type="bool", default=False),
    probe_timeout=dict(type="float", default=2.0),
)


class Outcome:
    """What the task returns, filled in as it goes (so a failure still returns the plan)."""

    def __init__(self):
        self.result = {"changed": False}
        self.notices = []

    def set_plan(self, api, plan):
        data = api.plan_data(plan)
        self.result["plan"] = data
        self.result["summary"] = data["summary"]


def plan_diff(api, plan):
    return {"prepared": api.plan_text(plan) + "\n"}


def run(module, api, outcome):
    params = module.params
    if params["sandbox"]:
        api.enter_sandbox(params["sandbox"])  # first: it must run before any thread starts
    topology = api.load(params["src"], params["content"], params["vars"])
    outcome.result["topology"] = topology.name
    for warning in topology.warnings:
        module.warn(warning)
    root = api.state_dir(params["state_dir"])
    present = params["state"] == "present"
    if present and params["verify"] and not topology.probes:
        module.fail_json(msg=f"verify: true, but topology {topology.name} has no probes to run: "
                             "add a probes: section or drop verify. Nothing was changed.",
                         **outcome.result)

    if module.check_mode:
        plan = api.plan(topology, root, params["adopt"]) if present else \
            api.plan_destroy(topology.name, root)
        outcome.set_plan(api, plan)
        if plan.conflicts:  # the real run would refuse: so does check mode
            raise api.PlanConflicts(plan)
        outcome.result["changed"] = bool(plan.actions)
        if module._diff:
            outcome.result["diff"] = plan_diff(api, plan)
        return

    gate = None
    if present and params["verify"]:
        def seen(verified):
            outcome.result["probes"] = verified.to_json()["probes"]

        gate = api.probe_gate(topology, timeout=params["probe_timeout"], seen=seen)

    # the plan is returned even when its apply fails (and is rolled back)
    def planned(plan):
        outcome.set_plan(api, plan)

    if present:
        applied = api.apply(topology, root, params["lock_timeout"], params["confirm_timeout"],
                            gate, outcome.notices.append, planned, params["adopt"])
    else:
        applied = api.destroy(topology.name, root, params["lock_timeout"],
                              outcome.notices.append, planned)
    outcome.set_plan(api, applied.plan)
    outcome.result["recovered"] = list(applied.recovered)
    outcome.result["changed"] = bool(applied.plan.actions or applied.recovered)
    if module._diff:
        outcome.result["diff"] = plan_diff(api, applied.plan)


def conflicts_message(plan):
    lines = "".join(f"\n  conflict: {c.message}" for c in plan.conflicts)
    return f"the plan has conflicts, nothing was changed:{lines}"


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=[("src", "content")],
                           required_one_of=[("src", "content")])
    if NETDECL_MISSING:
        module.fail_json(msg=f"netdecl is not installed for the Python running this module on "
                             f"the host ({os.path.realpath(sys.executable)}): install it there, "
                             "or set ansible_python_interpreter to the Python that has it")
    api = netdecl_calls()
    outcome = Outcome()

    def fail(msg, status, **extra):
        if outcome.notices:
            outcome.result["notices"] = outcome.notices
        module.fail_json(msg=msg, exit_status=status, **{**outcome.result, **extra})

    try:
        run(module, api, outcome)
    except api.InvalidTopology as exc:
        fail(str(exc), int(exc.status), diagnostics=[str(d) for d in exc.diagnostics])
    except api.PlanConflicts as exc:
        outcome.set_plan(api, exc.plan)
        fail(conflicts_message(exc.plan), int(exc.status))
    except api.NetdeclError as exc:
        # exit 4: the rollback left something behind, which the message lists: changed
        status = int(exc.status)
        fail(str(exc), status, changed=status == 4)
    except PermissionError as exc:
        fail(f"the kernel refused ({exc.filename or exc.strerror or exc}): netdecl needs root "
             "(CAP_NET_ADMIN, CAP_SYS_ADMIN) on the managed host; use become: true", 1)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        fail(f"{exc.strerror or exc}{where}", 1)
    except Exception as exc:  # noqa: BLE001 - one line for the user, never a traceback
        fail(f"unexpected error in netdecl (a bug; please report it): "
             f"{type(exc).__name__}: {exc}", 1)
    if outcome.notices:
        outcome.result["notices"] = outcome.notices
    module.exit_json(**outcome.result)


if __name__ == "__main__":
    main()
