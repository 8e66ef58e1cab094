"""`Store` on the standard library's sqlite3: one file (or ":memory:"), WAL journal, one commit per change."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .store import HandshakeRequest, HandshakeResponse, Invite, NetworkRecord, NodeRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS key_bindings (public_key TEXT PRIMARY KEY, node_id INTEGER NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS nodes (
    node_id INTEGER PRIMARY KEY, public_key TEXT NOT NULL, real_addr TEXT NOT NULL, public INTEGER NOT NULL,
    hostname TEXT UNIQUE, tags TEXT NOT NULL, owner TEXT NOT NULL, lan_addrs TEXT NOT NULL,
    version TEXT NOT NULL, relay_only INTEGER NOT NULL, key_created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS networks (
    network_id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, join_rule TEXT NOT NULL, token TEXT NOT NULL,
    created REAL NOT NULL, max_members INTEGER NOT NULL, allowed_ports TEXT NOT NULL, description TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (network_id INTEGER NOT NULL, node_id INTEGER NOT NULL,
    PRIMARY KEY (network_id, node_id));
CREATE INDEX IF NOT EXISTS members_by_node ON members (node_id);
CREATE TABLE IF NOT EXISTS invites (target INTEGER NOT NULL, network_id INTEGER NOT NULL, inviter INTEGER NOT NULL,
    ts INTEGER NOT NULL, PRIMARY KEY (target, network_id));
CREATE TABLE IF NOT EXISTS trust (a INTEGER NOT NULL, b INTEGER NOT NULL, PRIMARY KEY (a, b));
CREATE TABLE IF NOT EXISTS hs_requests (to_node INTEGER NOT NULL, from_node INTEGER NOT NULL,
    justification TEXT NOT NULL, ts INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (to_node, from_node));
CREATE TABLE IF NOT EXISTS hs_responses (seq INTEGER PRIMARY KEY AUTOINCREMENT, to_node INTEGER NOT NULL,
    from_node INTEGER NOT NULL, accept INTEGER NOT NULL, ts INTEGER NOT NULL);
"""

FIRST_NODE_ID = 1      # 0 is reserved (unregistered)
FIRST_NETWORK_ID = 1   # 0 is the backbone


class SQLiteStore:
    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _write(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._tx():
            return self._db.execute(sql, args)

    def _one(self, sql: str, args: tuple = ()) -> tuple | None:
        return self._db.execute(sql, args).fetchone()

    # -- nodes -------------------------------------------------------------------------
    @staticmethod
    def _node(row: tuple | None) -> NodeRecord | None:
        if row is None:
            return None
        return NodeRecord(node_id=row[0], public_key=row[1], real_addr=row[2], public=bool(row[3]),
                          hostname=row[4] or "", tags=json.loads(row[5]), owner=row[6],
                          lan_addrs=json.loads(row[7]), version=row[8], relay_only=bool(row[9]),
                          key_created=row[10])

    def node(self, node_id: int) -> NodeRecord | None:
        return self._node(self._one("SELECT * FROM nodes WHERE node_id=?", (node_id,)))

    def node_by_hostname(self, hostname: str) -> NodeRecord | None:
        return self._node(self._one("SELECT * FROM nodes WHERE hostname=?", (hostname,)))

    def bound_node_id(self, public_key: str) -> int | None:
        row = self._one("SELECT node_id FROM key_bindings WHERE public_key=?", (public_key,))
        return None if row is None else row[0]

    def allocate_node_id(self, public_key: str) -> int:
        with self._tx():
            row = self._db.execute("SELECT v FROM meta WHERE k='next_node'").fetchone()
            node_id = FIRST_NODE_ID if row is None else row[0]
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('next_node', ?)", (node_id + 1,))
            self._db.execute("INSERT INTO key_bindings VALUES (?, ?)", (public_key, node_id))
        return node_id

    def rebind_key(self, node_id: int, old_key: str, new_key: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM key_bindings WHERE public_key=?", (old_key,))
            self._db.execute("INSERT OR REPLACE INTO key_bindings VALUES (?, ?)", (new_key, node_id))

    def put_node(self, rec: NodeRecord) -> None:
        self._write("INSERT OR REPLACE INTO nodes VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (rec.node_id, rec.public_key, rec.real_addr, int(rec.public), rec.hostname or None,
                     json.dumps(rec.tags), rec.owner, json.dumps(rec.lan_addrs), rec.version,
                     int(rec.relay_only), rec.key_created))

    def delete_node(self, node_id: int) -> None:
        self._write("DELETE FROM nodes WHERE node_id=?", (node_id,))

    def node_count(self) -> int:
        return self._one("SELECT COUNT(*) FROM nodes")[0]

    # -- networks ------------------------------------------------------------------------
    @staticmethod
    def _network(row: tuple | None) -> NetworkRecord | None:
        if row is None:
            return None
        return NetworkRecord(network_id=row[0], name=row[1], join_rule=row[2], token=row[3], created=row[4],
                             max_members=row[5], allowed_ports=json.loads(row[6]), description=row[7])

    def network(self, network_id: int) -> NetworkRecord | None:
        return self._network(self._one("SELECT * FROM networks WHERE network_id=?", (network_id,)))

    def networks(self) -> list[NetworkRecord]:
        rows = self._db.execute("SELECT * FROM networks ORDER BY network_id").fetchall()
        return [self._network(r) for r in rows]

    def create_network(self, rec: NetworkRecord) -> int:
        with self._tx():
            row = self._db.execute("SELECT MAX(network_id) FROM networks").fetchone()
            net_id = max(FIRST_NETWORK_ID, (row[0] or 0) + 1)
            if net_id > 0xFFFF:
                raise OverflowError("network id space exhausted")
            self._db.execute("INSERT INTO networks VALUES (?,?,?,?,?,?,?,?)",
                             (net_id, rec.name, rec.join_rule, rec.token, rec.created, rec.max_members,
                              json.dumps(rec.allowed_ports), rec.description))
        rec.network_id = net_id
        return net_id

    def member_networks(self, node_id: int) -> list[int]:
        rows = self._db.execute("SELECT network_id FROM members WHERE node_id=? ORDER BY network_id", (node_id,))
        return [r[0] for r in rows]

    def members(self, network_id: int) -> list[int]:
        rows = self._db.execute("SELECT node_id FROM members WHERE network_id=? ORDER BY node_id", (network_id,))
        return [r[0] for r in rows]

    def add_member(self, network_id: int, node_id: int) -> None:
        self._write("INSERT OR IGNORE INTO members VALUES (?, ?)", (network_id, node_id))

    def remove_member(self, network_id: int, node_id: int) -> bool:
        cur = self._write("DELETE FROM members WHERE network_id=? AND node_id=?", (network_id, node_id))
        return cur.rowcount > 0

    # -- network invitations ----------------------------------------------------------------------
    def add_invite(self, target: int, invite: Invite) -> None:
        self._write("INSERT OR REPLACE INTO invites VALUES (?,?,?,?)",
                    (target, invite.network_id, invite.inviter_id, invite.timestamp))

    def invites(self, target: int) -> list[Invite]:
        rows = self._db.execute("SELECT network_id, inviter, ts FROM invites WHERE target=? ORDER BY ts, network_id",
                                (target,))
        return [Invite(*r) for r in rows]

    def take_invite(self, target: int, network_id: int) -> Invite | None:
        with self._tx():
            row = self._db.execute("SELECT network_id, inviter, ts FROM invites WHERE target=? AND network_id=?",
                                   (target, network_id)).fetchone()
            self._db.execute("DELETE FROM invites WHERE target=? AND network_id=?", (target, network_id))
        return Invite(*row) if row else None

    # -- trust and relayed handshakes ---------------------------------------------------------
    def trusted(self, a: int, b: int) -> bool:
        row = self._one("SELECT COUNT(*) FROM trust WHERE (a=? AND b=?) OR (a=? AND b=?)", (a, b, b, a))
        return row[0] == 2

    def add_trust(self, a: int, b: int) -> None:
        self._write("INSERT OR IGNORE INTO trust VALUES (?, ?)", (a, b))

    def remove_trust(self, a: int, b: int) -> bool:
        cur = self._write("DELETE FROM trust WHERE (a=? AND b=?) OR (a=? AND b=?)", (a, b, b, a))
        return cur.rowcount > 0

    def add_handshake_request(self, to_node: int, req: HandshakeRequest) -> None:
        self._write("INSERT INTO hs_requests VALUES (?,?,?,?,0)",
                    (to_node, req.from_node_id, req.justification, req.timestamp))

    def handshake_requests(self, to_node: int) -> list[HandshakeRequest]:
        rows = self._db.execute("SELECT from_node, justification, ts FROM hs_requests WHERE to_node=? "
                                "ORDER BY ts, from_node", (to_node,))
        return [HandshakeRequest(*r) for r in rows]

    def close_handshake_request(self, to_node: int, from_node: int) -> bool:
        cur = self._write("DELETE FROM hs_requests WHERE to_node=? AND from_node=?", (to_node, from_node))
        return cur.rowcount > 0

    def take_handshakes(self, node_id: int) -> tuple[list[HandshakeRequest], list[HandshakeResponse]]:
        with self._tx():
            rows = self._db.execute("SELECT from_node, justification, ts FROM hs_requests "
                                    "WHERE to_node=? AND delivered=0 ORDER BY ts, from_node", (node_id,)).fetchall()
            reqs = [HandshakeRequest(*r) for r in rows]
            rows = self._db.execute("SELECT from_node, accept, ts FROM hs_responses WHERE to_node=? ORDER BY seq",
                                    (node_id,)).fetchall()
            self._db.execute("UPDATE hs_requests SET delivered=1 WHERE to_node=?", (node_id,))
            self._db.execute("DELETE FROM hs_responses WHERE to_node=?", (node_id,))
        return reqs, [HandshakeResponse(r[0], bool(r[1]), r[2]) for r in rows]

    def add_handshake_response(self, to_node: int, resp: HandshakeResponse) -> None:
        self._write("INSERT INTO hs_responses (to_node, from_node, accept, ts) VALUES (?,?,?,?)",
                    (to_node, resp.from_node_id, int(resp.accept), resp.timestamp))

    def close(self) -> None:
        self._db.close()
