"""Membership changes and leadership transfer, as the node carries them out: one server
at a time (§4.1), several through joint consensus (§4.3, the plan of
:mod:`.confchange`), catch-up of learners (§4.2.1), and handing leadership over (§3.10).

Owns: the ``set_members`` change under way, the catch-ups, the transfer target and
deadline. May not touch: votes, reads, the log but to append configuration entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import (
    ChangeInProgress,
    NotLeader,
    NotVoter,
    TransferFailed,
    UnknownServer,
)
from .confchange import (
    CatchUp,
    CatchUpState,
    ChangePhase,
    MembershipChange,
    check_single_change,
    joint_config,
    plan_target,
    single_step,
)
from .messages import (
    Config,
    Entry,
    EntryKind,
)
from .progress import Progress
from .types import INF, LeaderNotReady, Role, TransferInProgress, TransferOutcome, mypyc_attr
from .unstable import ReadyCycle

__all__ = ["Membership"]


@mypyc_attr(allow_interpreted_subclasses=True)
class Membership(ReadyCycle):
    """Membership changes, catch-up and leadership transfer."""

    def change_config(self, config: Config, now: float) -> Entry:
        """Append a new configuration (dissertation §4.1: one server at a time, in force
        from the moment it is appended). Raises if a change is already in progress."""
        self._check_can_change()
        check_single_change(self.config, config, self.options.min_majority)
        self._now = now
        return self._append_config(config)

    def _check_can_change(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self.transfer_target is not None:
            raise TransferInProgress(f"leadership is being transferred to {self.transfer_target!r}")
        if not self.committed_in_term:
            raise LeaderNotReady("the leader has not committed an entry of its term yet")
        change = self.membership_change
        if change is not None and change.active:
            raise ChangeInProgress(
                f"a change to {change.target} is under way ({change.phase.value})"
            )
        if self.config_index > self.commit_index:
            raise ChangeInProgress(
                f"the configuration change at index {self.config_index} is not committed yet"
            )

    def _append_config(self, config: Config) -> Entry:
        """Append ``config`` (in force at once, §4.1), with the progress it needs."""
        old = self.config
        index = self.log.last_index + 1
        for peer in old.members:
            if peer not in config.members and peer != self.name:
                self._retiring[peer] = index
        for peer in config.members:
            if peer not in old.members and peer != self.name:
                # A server joining (or rejoining under a name removed earlier) may have
                # any log, or none: what the leader knew of that name means nothing now.
                self._retiring.pop(peer, None)
                self.progress[peer] = Progress(index)
                self.foreign.pop(peer, None)
        self.configs.append(index, config)
        entry = self._append(EntryKind.CONFIG, config)
        self._sync_progress()
        return entry

    def set_members(
        self,
        voters: Any,
        learners: Any,
        addresses: Mapping[str, str] | None,
        now: float,
    ) -> MembershipChange:
        """Begin making the configuration exactly ``voters`` and ``learners``; returns the
        change, whose ``phase`` ends ``DONE`` once C_new is committed, or ``FAILED``.

        New voters are caught up as learners first (§4.2.1). Then a change of one voter
        is appended directly (§4.1); any other goes through joint consensus (§4.3):
        C_old,new, then C_new, appended automatically once C_old,new commits. Raises
        ``ValueError`` for a configuration that cannot be (no voters, a server in both
        sets, fewer voters than ``min_majority``), :class:`~trioraft.ChangeInProgress` if
        a change is under way."""
        self._check_can_change()
        current = self.config
        target = plan_target(current, voters, learners, addresses, self.options.min_majority)
        self._now = now
        newcomers = tuple(v for v in target.voters if v not in current.all_voters)
        change = MembershipChange(target, newcomers)
        missing = [n for n in newcomers if n not in current.learners]
        if missing:  # learners first: they vote in no quorum yet (§4.2.1)
            given = dict(target.addresses)
            joining = {n: given[n] for n in missing if n in given}
            self._append_config(
                Config(
                    voters=current.voters,
                    learners=(*current.learners, *missing),
                    addresses={**dict(current.addresses), **joining},
                )
            )
            change.entries += 1
        for name in newcomers:
            self.start_catch_up(name, now)
        # The change is under way only once every new voter's catch-up has begun: one
        # found caught up at once must not judge it by another's earlier catch-up.
        self.membership_change = change
        self.change_count += 1
        self._advance_change()
        return change

    def _advance_change(self) -> None:
        """Move the ``set_members`` change on: after catch-up, its configuration; once
        C_new is committed, done."""
        change = self.membership_change
        if change is None or not change.active or self.role is not Role.LEADER:
            return
        if change.phase is ChangePhase.CATCHING_UP:
            if not self._caught_up(change):
                return
            change.phase = ChangePhase.CHANGING
            target = change.target
            if not _same_members(self.config, target):
                step = target if single_step(self.config, target) else None
                self._append_config(step or joint_config(self.config, target))
                change.entries += 1
        if not self.config.joint and self.config_index <= self.commit_index:
            change.phase = ChangePhase.DONE
            self.membership_change = None
            self.change_count += 1

    def _caught_up(self, change: MembershipChange) -> bool:
        """Whether every new voter of ``change`` is caught up and the configuration
        that made them learners is committed (the change fails if one cannot be)."""
        for name in change.newcomers:
            catch_up = self.catch_ups.get(name)
            if catch_up is None or catch_up.state is CatchUpState.FAILED:
                reason = catch_up.reason if catch_up is not None else "its catch-up ended"
                change.fail(f"{name!r} did not catch up: {reason}", left_behind=name)
                self.membership_change = None
                self.change_count += 1
                return False
            if catch_up.state is CatchUpState.PENDING:
                return False
        return self.config_index <= self.commit_index

    def add_server_config(self, name: str, voter: bool, address: str | None = None) -> Config:
        """The configuration that adds ``name`` (as a voter, or a learner), reachable at
        ``address`` if given (else at the address it had, if any)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"server names are non-empty strings, got {name!r}")
        if address is not None and (not isinstance(address, str) or not address):
            raise ValueError(f"an address is a non-empty 'host:port' string, got {address!r}")
        cfg = self.config
        if name in cfg.voters:
            raise ValueError(f"{name!r} is already a voter")
        if name in cfg.learners and not voter:
            raise ValueError(f"{name!r} is already a learner")
        learners = [n for n in cfg.learners if n != name]
        addresses = dict(cfg.addresses)
        if address is not None:
            addresses[name] = address
        if voter:
            return Config(voters=(*cfg.voters, name), learners=learners, addresses=addresses)
        return Config(voters=cfg.voters, learners=(*learners, name), addresses=addresses)

    def remove_server_config(self, name: str) -> Config:
        """The configuration without ``name``."""
        cfg = self.config
        if name not in cfg.members:
            raise UnknownServer(f"{name!r} is not a member of the cluster {cfg}")
        if cfg.voters == (name,):
            raise ValueError(f"cannot remove {name!r}: it is the last voter")
        return Config(
            voters=[n for n in cfg.voters if n != name],
            learners=[n for n in cfg.learners if n != name],
            addresses={n: a for n, a in cfg.addresses if n != name},
        )

    def start_catch_up(self, name: str, now: float) -> CatchUp:
        """Begin bringing learner ``name`` up to date before it may vote (§4.2.1).

        The leader replicates in rounds: each round ends when the learner holds every
        entry the leader had when the round began. When a round takes no longer than an
        election timeout, the learner is caught up. The catch-up fails after
        ``MAX_CATCH_UP_ROUNDS`` rounds, or when the learner makes no progress for an
        election timeout.
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if name not in self.config.learners:
            raise UnknownServer(f"{name!r} is not a learner of the cluster {self.config}")
        catch_up = CatchUp(round_end=self.log.last_index, round_start=now)
        self.catch_ups[name] = catch_up
        pr = self.progress[name]
        if pr.match >= catch_up.round_end:
            self._catch_up_progress(catch_up, pr.match, now)
        return catch_up

    def _catch_up_progress(self, catch_up: CatchUp, match: int, now: float) -> None:
        round_time = self.options.min_election_timeout
        if catch_up.progress(match, now, self.log.last_index, round_time):
            self.change_count += 1
            self._advance_change()

    def _best_transfer_target(self) -> str | None:
        best: tuple[int, str] | None = None
        for peer in self.config.voters:
            pr = self.progress.get(peer)
            if peer != self.name and pr is not None:
                # Most up to date first; the name breaks ties so the choice is deterministic.
                key = (pr.match, peer)
                if best is None or key[0] > best[0]:
                    best = key
        return best[1] if best is not None else None

    def transfer_leadership(self, target: str | None, now: float) -> str:
        """Begin handing leadership to ``target`` (§3.10); returns the chosen target.

        Proposals are refused until it completes or is abandoned after an election
        timeout. The target is sent TimeoutNow once its log matches the leader's.
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if target is None:
            target = self._best_transfer_target()
            if target is None:
                raise TransferFailed("there is no other voter to hand leadership to")
        elif target not in self.config.voters:
            if target in self.config.learners:
                raise NotVoter(f"{target!r} is a learner and cannot lead")
            raise UnknownServer(f"{target!r} is not a voter of the cluster {self.config}")
        if target == self.name:
            return target
        if self.transfer_target is not None:
            raise TransferInProgress(f"leadership is being transferred to {self.transfer_target!r}")
        self._now = now
        self._begin_transfer(target, now)
        return target

    def transfer_outcome(self, target: str) -> TransferOutcome:
        """How the handover to ``target`` that :meth:`transfer_leadership` began stands:
        done once ``target`` leads (a transfer to this leader itself is done at once);
        abandoned if this server still leads with no transfer under way (the target did
        not catch up within an election timeout); lost to another server if one else was
        elected; pending meanwhile."""
        if target == self.name:
            return TransferOutcome.DONE
        if self.leader == target and self.role is not Role.LEADER:
            return TransferOutcome.DONE
        if self.role is Role.LEADER and self.transfer_target is None:
            return TransferOutcome.ABANDONED
        if self.leader not in (None, target, self.name):
            return TransferOutcome.OTHER_ELECTED
        return TransferOutcome.PENDING

    def awaiting_first_answer(self, name: str) -> bool:
        """Whether this leader still waits for the first answer of ``name``, a learner
        it added: a server of another cluster refuses at its first message, so adding a
        learner waits for that answer. ``False`` once it answered (its log is known to
        match this leader's), refused as a server of another cluster, is no longer
        replicated to, or this server no longer leads."""
        if self.role is not Role.LEADER or name in self.foreign:
            return False
        pr = self.progress.get(name)
        return pr is not None and pr.match == 0

    def _begin_transfer(self, target: str, now: float) -> None:
        self.transfer_target = target
        self._transfer_deadline = now + self.options.max_election_timeout
        self._timeout_now_sent = False
        self.change_count += 1
        self._replication_due = True
        self._after_match(target, now)

    def _abort_transfer(self) -> None:
        self.transfer_target = None
        self._transfer_deadline = INF
        self._timeout_now_sent = False
        self.change_count += 1


def _same_members(a: Config, b: Config) -> bool:
    """Whether ``a`` is ``b`` in voters, learners, addresses and outgoing voters."""
    return (a.voters, a.learners, a.addresses, a.outgoing) == (
        b.voters, b.learners, b.addresses, b.outgoing,
    )  # fmt: skip
