"""The guard against `ip netns exec`: which mount namespaces keep /run/netns mounts alive.

mountinfo lines as the kernel writes them in each situation (from a Debian host, the test
harness and `ip netns exec`), so the decision is tested without needing the situation."""

from __future__ import annotations

from netdecl.backends.mountns import lasting_problem, mount_of, parse_mountinfo

ROOT = "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
RUN = "25 22 0:23 / /run rw,nosuid shared:12 - tmpfs tmpfs rw,mode=755\n"


def entries(*lines: str):
    return parse_mountinfo("".join(lines))


def test_the_hosts_own_mount_namespace_is_fine():
    assert lasting_problem(entries(ROOT, RUN), same_as_init=True) is None


def test_ip_netns_exec_makes_every_mount_a_slave_and_is_refused():
    slave_netns = "600 25 0:23 /netns /run/netns rw master:40 - tmpfs tmpfs rw\n"
    problem = lasting_problem(entries(ROOT.replace("shared:1", "master:1"),
                                      RUN.replace("shared:12", "master:12"), slave_netns),
                              same_as_init=False)
    assert problem is not None and "nsenter --net=/run/netns/HOST" in problem
    # no /run/netns mount yet: the slave /run it would be made on decides
    assert lasting_problem(entries(ROOT.replace("shared:1", "master:1"),
                                   RUN.replace("shared:12", "master:12")),
                           same_as_init=False) is not None


def test_a_private_copy_of_the_hosts_mounts_is_refused():
    # `unshare -m`: everything private, /run/netns part of the copied /run
    private = entries(ROOT.replace(" shared:1", ""), RUN.replace(" shared:12", ""))
    assert lasting_problem(private, same_as_init=False) is not None


def test_a_namespace_with_its_own_run_netns_tmpfs_is_fine():
    # the test harness and --sandbox: a tmpfs of their own, private or made shared by netdecl
    for tags in ("", " shared:300"):
        own = f"700 25 0:90 / /run/netns rw{tags} - tmpfs tmpfs rw,mode=755\n"
        assert lasting_problem(entries(ROOT.replace(" shared:1", ""), own),
                               same_as_init=False) is None


def test_mount_of_picks_the_deepest_and_the_last_stacked_mount():
    first = "30 25 0:40 / /run/netns rw shared:5 - tmpfs tmpfs rw\n"
    second = "31 30 0:41 / /run/netns rw master:9 - tmpfs tmpfs rw\n"
    found = mount_of(entries(ROOT, RUN, first, second), "/run/netns")
    assert found is not None and found.slave and not found.shared
    assert mount_of(entries(ROOT, RUN), "/run/netns").point == "/run"
    assert mount_of(entries(ROOT, RUN), "/running").point == "/"
