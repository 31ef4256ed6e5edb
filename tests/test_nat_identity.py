"""A NAT table pair's identity: both nft handles, and what the record proves with them. Pure."""

from __future__ import annotations

from netdecl.backends import nftables
from netdecl.backends.host import NatHandles
from netdecl.engine.ownership import foreign_nat_tables, nat_ours, owns
from netdecl.engine.state.record import OwnershipRecord
from netdecl.model import NatRule, NatTable, Topology

NS = "nsfs:4:99"
V6 = (NatRule(kind="masquerade", source="fd00:63::/64", not_out="nbr0"),)


def test_the_identity_names_both_tables_and_reads_back():
    for handles in (NatHandles(12, 13), NatHandles(12, None), NatHandles(None, 13)):
        assert NatHandles.of(f"{NS}/{handles.identity()}") == (NS, handles)
    assert NatHandles(12, None).identity() == "nft12/ip6:-"
    # a record from before the ip6 table's handle was kept
    assert NatHandles.of(f"{NS}/nft12") == (NS, NatHandles(12, None, ip6_known=False))
    assert NatHandles.of(f"{NS}/if3") is None and NatHandles.of("rules:abc") is None


def _seen(ident: str, recorded: str) -> tuple[NatTable, Topology, OwnershipRecord]:
    table = NatTable("", rules=(), ident=f"{NS}/{ident}")
    observed = Topology(name="t")
    observed.add(table)
    record = OwnershipRecord("t")
    record.nat_namespaces.add("")
    record.identities[table.key] = f"{NS}/{recorded}"
    return table, observed, record


def test_each_table_is_proven_by_its_own_handle():
    cases = {
        # observed, recorded: owned, what is ours, which are foreign
        ("nft12/ip6:13", "nft12/ip6:13"): (True, "nft12/ip6:13", "ip"),
        ("nft12/ip6:-", "nft12/ip6:13"): (True, "nft12/ip6:-", "ip"),  # ours deleted: drift
        ("nft-/ip6:13", "nft12/ip6:13"): (True, "nft-/ip6:13", "ip"),
        ("nft12/ip6:14", "nft12/ip6:13"): (False, "nft12/ip6:-", "ip6"),  # made again
        ("nft12/ip6:14", "nft12/ip6:-"): (False, "nft12/ip6:-", "ip6"),  # never ours
        ("nft11/ip6:13", "nft12/ip6:13"): (False, None, "ip"),
        ("nft11/ip6:14", "nft12/ip6:13"): (False, None, "ip and ip6"),
        ("nft12/ip6:14", "nft12"): (True, "nft12/ip6:14", "ip"),  # old record: ip6 by name
    }
    for (ident, recorded), (owned, ours, foreign) in cases.items():
        table, observed, record = _seen(ident, recorded)
        assert owns(table, observed, record) is owned, (ident, recorded)
        mine = nat_ours(table, observed, record)
        assert (mine.ident if mine else None) == (f"{NS}/{ours}" if ours else None), ident
        if not owned:
            assert foreign_nat_tables(table, record) == foreign, (ident, recorded)


def test_a_replace_addresses_each_table_by_its_handle_never_by_its_name():
    document = nftables._commands("netdecl-t", V6, NatHandles(12, 13))
    tables = [(verb, body["table"]) for c in document for verb, body in c.items()
              if "table" in body]
    assert tables == [
        ("delete", {"family": "ip", "handle": 12}),
        ("create", {"family": "ip", "name": "netdecl-t"}),
        ("delete", {"family": "ip6", "handle": 13}),
        ("create", {"family": "ip6", "name": "netdecl-t"})]
    # no ip6 table of ours and none needed: the ip6 family is not named at all
    ipv4_only = nftables._commands("netdecl-t", (), NatHandles(12, None))
    assert all(body["table"]["family"] == "ip" for c in ipv4_only for body in c.values()
               if "table" in body)
    # a record from before: the ip6 table by name, as then
    legacy = nftables._commands("netdecl-t", (), NatHandles(12, None, ip6_known=False),
                                build=False)
    assert {"delete": {"table": {"family": "ip6", "name": "netdecl-t"}}} in legacy
