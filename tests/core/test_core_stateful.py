"""Raft's safety properties (Figure 3 of the Raft paper) under a hostile network.

A Hypothesis state machine drives 3 to 5 pure-core nodes (no trio) by hand: it delivers,
drops, duplicates and reorders messages, partitions the cluster, advances a float clock
and fires timers, proposes commands, requests reads, changes the membership, transfers
leadership, and crashes and restarts servers from their storage. After every step it
checks:

* Election Safety: at most one leader per term, over the whole run.
* Log Matching: if two logs hold an entry with the same index and term, the logs are
  identical up to that index.
* Leader Completeness: an entry known committed is in the log of every leader of a later
  term (and of the term it was seen committed in).
* State Machine Safety: no two servers ever commit different entries at one index, and
  no server's commit index ever goes down (it is persisted, so not even over a restart).
* One vote per term, terms never decrease; a leader's matchIndex for a follower is a
  prefix the two logs really share; and every ReadIndex read (§6.4) is answered once,
  confirmed at an index covering every entry committed before it was requested, or
  failed when its leader steps down; a follower's read (``follower_reads``), asked of
  its leader, is answered at an index covering every entry committed anywhere before
  it was requested, or failed.

The default profile of tests/conftest.py keeps this to a few seconds; TRIORAFT_SLOW=1
runs many more examples.
"""

from __future__ import annotations

import contextlib

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trioraft import RaftError
from trioraft._core import Message, RaftNode, Role
from trioraft.testing._figure3 import Figure3
from trioraft.testing._pure import PureCluster

NAMES = ("a", "b", "c", "d", "e")
MAX_BATCH = 400  # most messages one "deliver everything" rule handles
HISTORY = 64  # how many delivered messages a replay may pick from

node_index = st.integers(min_value=0, max_value=len(NAMES) - 1)
message_index = st.integers(min_value=0, max_value=10_000)
group_mask = st.integers(min_value=0, max_value=2 ** len(NAMES) - 1)  # a set of nodes


class RaftCluster(RuleBasedStateMachine):
    """A cluster of pure-core nodes and an adversarial network between them."""

    # ------------------------------------------------------------------ set-up
    @initialize(
        size=st.integers(min_value=3, max_value=5),
        seed=st.integers(min_value=0, max_value=2**16),
        pre_vote=st.booleans(),
        check_quorum=st.booleans(),
        max_entries=st.sampled_from([1, 2, 64]),
        max_inflight=st.sampled_from([1, 2, 8]),
        elect_first=st.booleans(),
        compaction=st.sampled_from([None, (4, 0), (6, 2)]),
        lease_reads=st.booleans(),
        follower_reads=st.booleans(),
    )
    def setup(
        self,
        size,
        seed,
        pre_vote,
        check_quorum,
        max_entries,
        max_inflight,
        elect_first,
        compaction,
        lease_reads,
        follower_reads,
    ):
        self.names = NAMES[:size]
        self.cluster = PureCluster(
            self.names,
            seed=seed,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            max_entries_per_message=max_entries,
            max_inflight=max_inflight,
            compaction=compaction is not None,
            snapshot_threshold=compaction[0] if compaction else 10_000,
            snapshot_trailing=compaction[1] if compaction else 1_000,
            snapshot_chunk_size=8,
            lease_reads=lease_reads and check_quorum,
            follower_reads=follower_reads,
        )
        self.seed = seed
        self.restarts = 0
        self.storages = self.cluster.storages
        self.nodes: dict[str, RaftNode] = self.cluster.nodes
        self.network: list[Message] = []
        self.history: list[Message] = []  # recently delivered messages, for replays
        self.side: frozenset[str] | None = None  # a partition: this side and the rest
        self.commands = 0

        # What the checks remember over the whole run.
        self.figure3 = Figure3(self._fail)
        self.vote_of: dict[tuple[str, int], str] = {}
        self.last_term = dict.fromkeys(self.names, 0)
        self.last_commit = dict.fromkeys(self.names, 0)
        # Reads requested and not yet answered: node -> ticket -> (term, index to cover).
        self.reads: dict[str, dict[int, tuple[int, int]]] = {name: {} for name in self.names}
        # Follower reads (§6.4) not yet answered: node -> ticket -> index to cover.
        self.remote_reads: dict[str, dict[int, int]] = {name: {} for name in self.names}
        self.reads_answered = 0
        if elect_first:  # start from a cluster with a leader, to get further in a run
            self.nodes[self.names[seed % size]].trigger_election(self.now)
            self.pump()
            self.deliver_all()
        self.pump()

    # ---------------------------------------------------------------- plumbing
    def pick(self, i: int) -> RaftNode:
        return self.nodes[self.names[i % len(self.names)]]

    def group(self, mask: int) -> frozenset[str]:
        return frozenset(n for k, n in enumerate(self.names) if mask >> k & 1)

    def leaders(self) -> list[RaftNode]:
        return [node for node in self.nodes.values() if node.role is Role.LEADER]

    def pick_leader(self, i: int) -> RaftNode:
        leaders = self.leaders()  # several, at most one of them current
        return leaders[i % len(leaders)]

    @property
    def now(self) -> float:
        return self.cluster.now

    @now.setter
    def now(self, value: float) -> None:
        self.cluster.now = value

    def pump(self) -> None:
        """Carry out every node's Readys (persist, send, apply, answer reads)."""
        for name in self.names:
            self.network.extend(self.cluster.take(name))
        self.drain_reads()

    def drain_reads(self) -> None:
        for name, node in self.nodes.items():
            pending = self.reads[name]
            remote = self.remote_reads[name]
            for ticket, read_index in self.cluster.reads[name]:
                if ticket in remote:
                    # §6.4, asked of the leader: the index covers every entry committed
                    # anywhere before the read began.
                    must_cover = remote.pop(ticket)
                    assert read_index >= must_cover, (name, ticket, read_index, must_cover)
                    self.reads_answered += 1
                    continue
                assert ticket in pending, f"{name}: read {ticket} unknown or answered twice"
                term, must_cover = pending.pop(ticket)
                # Confirmed while leading that term (it may have stepped down since, in
                # the same step: a removed leader hands over once its removal commits).
                assert node.term == term, (name, ticket)
                # §6.4: the read index covers every entry committed before the request.
                assert read_index >= must_cover, (name, ticket, read_index, must_cover)
                assert read_index <= node.commit_index
                self.reads_answered += 1
            self.cluster.reads[name].clear()
            for ticket in self.cluster.failed_reads[name]:
                if remote.pop(ticket, None) is not None:
                    self.reads_answered += 1
                    continue
                assert ticket in pending, f"{name}: read {ticket} unknown or answered twice"
                pending.pop(ticket)
                self.reads_answered += 1
            self.cluster.failed_reads[name].clear()
            if node.role is not Role.LEADER:
                # A server that is not leading has nothing left to answer.
                assert not pending, f"{name} lost its leadership without failing {pending}"

    def cut(self, m: Message) -> bool:
        return self.side is not None and ((m.src in self.side) != (m.dst in self.side))

    def deliver_message(self, m: Message) -> None:
        if self.cut(m):
            return  # lost in the partition
        self.history.append(m)
        del self.history[:-HISTORY]
        self.nodes[m.dst].step(m, self.now)
        self.check_after_step()
        self.pump()

    @staticmethod
    def _fail(message: str) -> None:
        raise AssertionError(message)

    def check_after_step(self) -> None:
        # Election Safety is checked after every single message, not only after rules.
        for name, node in self.nodes.items():
            if node.role is Role.LEADER:
                self.figure3.leader(name, node.term)

    # ------------------------------------------------------------------- rules
    @precondition(lambda self: self.network)
    @rule(i=message_index)
    def deliver_one(self, i):
        """Deliver any one pending message (so messages are reordered)."""
        self.deliver_message(self.network.pop(i % len(self.network)))

    @precondition(lambda self: self.network)
    @rule(picks=st.lists(message_index, min_size=2, max_size=12))
    def deliver_some(self, picks):
        """Deliver several pending messages, picked in any order."""
        for i in picks:
            if not self.network:
                break
            self.deliver_message(self.network.pop(i % len(self.network)))

    @precondition(lambda self: self.network)
    @rule()
    def deliver_all(self):
        """Deliver everything pending, in order, and what that causes (bounded)."""
        self.deliver_within(frozenset(self.names))

    @precondition(lambda self: self.network)
    @rule(mask=group_mask)
    def deliver_in_group(self, mask):
        """Deliver, in order, every message between members of a group, and what that
        causes; messages to or from the others stay pending (to arrive late, if ever)."""
        self.deliver_within(self.group(mask))

    def deliver_within(self, group: frozenset[str]) -> None:
        kept: list[Message] = []
        for _ in range(MAX_BATCH):
            if not self.network:
                break
            m = self.network.pop(0)
            if m.src in group and m.dst in group:
                self.deliver_message(m)
            else:
                kept.append(m)
        self.network[:0] = kept

    @precondition(lambda self: self.network)
    @rule(i=message_index)
    def drop(self, i):
        del self.network[i % len(self.network)]

    @precondition(lambda self: self.network)
    @rule(i=message_index)
    def duplicate(self, i):
        self.network.append(self.network[i % len(self.network)])

    @precondition(lambda self: self.history)
    @rule(i=message_index)
    def replay(self, i):
        """A copy of a message delivered earlier arrives again, late."""
        self.deliver_message(self.history[-1 - i % len(self.history)])

    @rule(dt=st.floats(min_value=0.0, max_value=0.4, allow_nan=False))
    def advance_time(self, dt):
        """Let time pass; every node whose timer expired ticks."""
        self.now += dt
        for node in self.nodes.values():
            if node.deadline <= self.now:
                node.tick(self.now)
                self.check_after_step()
        self.pump()

    @rule(i=node_index)
    def timeout(self, i):
        """Advance time to one node's deadline (if it has one) and tick it."""
        node = self.pick(i)
        if node.deadline != float("inf"):
            self.now = max(self.now, node.deadline)
        node.tick(self.now)
        self.check_after_step()
        self.pump()

    @rule()
    def heartbeat(self):
        """Every leader sends a heartbeat round."""
        for node in self.nodes.values():
            node.heartbeat_now()
        self.pump()

    @precondition(lambda self: self.leaders())
    @rule(i=node_index, count=st.integers(min_value=1, max_value=3))
    def propose(self, i, count):
        node = self.pick_leader(i)
        if node.transfer_target is None:
            for _ in range(count):
                self.commands += 1
                node.propose(("cmd", self.commands), self.now)
            self.check_after_step()
        self.pump()

    @precondition(lambda self: self.leaders())
    @rule(i=node_index)
    def request_read(self, i):
        node = self.pick_leader(i)
        must_cover = max(n.commit_index for n in self.nodes.values())
        ticket = node.request_read(self.now)
        assert ticket not in self.reads[node.name], f"{node.name}: read ticket {ticket} reused"
        self.reads[node.name][ticket] = (node.term, must_cover)
        self.pump()

    def followers_with_a_leader(self) -> list[RaftNode]:
        return [
            node
            for node in self.nodes.values()
            if node.options.follower_reads and node.role is Role.FOLLOWER and node.leader
        ]

    @precondition(lambda self: self.followers_with_a_leader())
    @rule(i=node_index)
    def request_follower_read(self, i):
        """§6.4: a follower (with follower_reads) asks its leader for a read index."""
        followers = self.followers_with_a_leader()
        node = followers[i % len(followers)]
        must_cover = max(n.commit_index for n in self.nodes.values())
        ticket = node.request_read(self.now)
        assert ticket not in self.remote_reads[node.name], f"{node.name}: ticket {ticket} reused"
        self.remote_reads[node.name][ticket] = must_cover
        self.pump()

    @rule(i=node_index)
    def trigger_election(self, i):
        """A forced election (skipping PreVote and the leader lease)."""
        node = self.pick(i)
        if node.can_campaign:
            node.trigger_election(self.now)
            self.check_after_step()
        self.pump()

    @rule(i=node_index, mask=group_mask)
    def elect_in_group(self, i, mask):
        """A forced election carried out among a group (the candidate and ``mask``)."""
        node = self.pick(i)
        if node.can_campaign:
            node.trigger_election(self.now)
            self.check_after_step()
            self.pump()
            self.deliver_within(self.group(mask) | {node.name})

    @precondition(lambda self: self.leaders())
    @rule(i=node_index, j=node_index)
    def transfer_leadership(self, i, j):
        node = self.pick_leader(i)
        with contextlib.suppress(RaftError):  # a transfer under way, an unknown target...
            node.transfer_leadership(self.names[j % len(self.names)], self.now)
        self.pump()

    @precondition(lambda self: self.leaders())
    @rule(i=node_index, j=node_index, voter=st.booleans())
    def change_membership(self, i, j, voter):
        """A leader adds (as voter or learner) or removes one server."""
        node = self.pick_leader(i)
        target = self.names[j % len(self.names)]
        # Refusals are fine here (not ready, a change in progress, the last voter...).
        with contextlib.suppress(RaftError, ValueError):
            if target in node.config.voters or (target in node.config.learners and not voter):
                config = node.remove_server_config(target)
            else:
                config = node.add_server_config(target, voter)
            node.change_config(config, self.now)
        self.check_after_step()
        self.pump()

    @rule(i=node_index)
    def crash_restart(self, i):
        """A node crashes and comes back from its storage; messages to it are lost."""
        name = self.pick(i).name
        self.network = [m for m in self.network if m.dst != name]
        self.restarts += 1
        self.reads[name].clear()  # the crashed server's callers get ServerStopped
        self.remote_reads[name].clear()
        self.cluster.restart(name, seed=self.seed * 1000 + 100 + self.restarts)
        self.pump()

    @rule(mask=group_mask)
    def partition(self, mask):
        side = self.group(mask)
        self.side = side if 0 < len(side) < len(self.names) else None

    @rule()
    def heal(self):
        self.side = None

    # -------------------------------------------------------------- invariants
    @invariant()
    def election_safety(self):
        """At most one leader per term, over the whole run (§5.2)."""
        self.check_after_step()

    @invariant()
    def hard_state_never_goes_back(self):
        """Terms only grow; one vote per term, even over restarts (Figure 2)."""
        for name, node in self.nodes.items():
            assert node.term >= self.last_term[name]
            self.last_term[name] = node.term
            if node.voted_for is not None:
                vote = self.vote_of.setdefault((name, node.term), node.voted_for)
                assert vote == node.voted_for, f"{name} voted twice in term {node.term}"

    @invariant()
    def figure3_properties(self):
        """Log Matching (§5.3), State Machine Safety (§5.4.3) and Leader Completeness
        (§5.4): the checks trioraft.testing's InvariantMonitor runs, over the nodes."""
        self.figure3.check(self.nodes.items())

    @invariant()
    def commit_index_never_goes_back(self):
        """Commit indexes never decrease, are persisted, and never pass the log (§5.4.3)."""
        for name, node in self.nodes.items():
            assert node.commit_index >= self.last_commit[name], name
            assert node.commit_index <= node.log.last_index, name
            assert self.storages[name].commit_index == node.commit_index
            self.last_commit[name] = node.commit_index

    @invariant()
    def match_index_is_sound(self):
        """A leader's matchIndex for a follower still in its term is a prefix the two logs
        share (Figure 2; what the leader counts when it commits)."""
        for leader in self.nodes.values():
            if leader.role is not Role.LEADER:
                continue
            for peer, pr in leader.progress.items():
                follower = self.nodes[peer]
                if follower.term == leader.term and pr.match:
                    assert follower.log.last_index >= pr.match, (leader.name, peer, pr)
                    lo = max(follower.log.first_index, leader.log.first_index)
                    assert follower.log.slice(lo, pr.match) == leader.log.slice(lo, pr.match)

    @invariant()
    def applied_commands_agree(self):
        """State Machine Safety as the state machines see it: every server has applied a
        prefix of one sequence of commands, snapshots and restores included (§5.4.3, §5)."""
        machines = sorted(self.cluster.machines.values(), key=len)
        longest = machines[-1]
        for machine in machines:
            assert machine == longest[: len(machine)], "two servers applied different commands"


TestRaftCluster = RaftCluster.TestCase
# Example count and the like come from the profile tests/conftest.py loads.
TestRaftCluster.settings = settings(stateful_step_count=150, deadline=None)
