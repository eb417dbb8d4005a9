"""Why routers rebalancing at once never drop a ball below rf (docs/rebalancing.md §4), checked by simulation.

The rule under test is the rebalancer's: a router plans a ball with ``plan_ball`` over *its own*
peer set, copies to its missing targets, checks that every target holds the version, and only
then drops the version from its ``extra`` holders. Routers here plan on different peer sets
(a join one of them has not heard of, a peer one of them counts as gone, a different
``--rebalance-rf``) and their steps interleave at random, as copies and drops do on the wire.
After every drop the ball must still be on at least the smallest rf of the routers. (And the
option that turns dropping off.)
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from mictlanx_sync.server.router import cli
from mictlanx_sync.server.router.placement import rank
from mictlanx_sync.server.router.rebalance import plan_ball

UNIVERSE = [f"peer-{i}" for i in range(9)]
BUCKET = "b"
TRIALS = 3000


@dataclass
class Ball:
    """The peers holding the ball's version now (as current; a drop removes it)."""

    holders: set[str] = field(default_factory=set)


#: broken variants of the rule, to show the simulation catches a loss
SKIP_COPY_AND_CHECK = "drops before its targets hold the version"
DROPS_OUTSIDE_ITS_SET = "drops holders of peers it does not plan on"


def router_steps(ball: Ball, present: list[str], key: str, rf: int, broken: str = "") -> Iterator[str]:
    """One router's pass over one ball, one wire step per ``next``."""
    listed = sorted(ball.holders & set(present))  # the listing of its available peers
    targets, missing, extra = plan_ball(present, BUCKET, key, listed, rf)
    if broken == DROPS_OUTSIDE_ITS_SET:
        extra = sorted(ball.holders - set(targets))
    if broken != SKIP_COPY_AND_CHECK:
        if missing and not listed:
            return  # no source to copy from: the ball is failed for this router, nothing dropped
        for target in missing:
            ball.holders.add(target)  # copied; a copy over a dropped version makes it current again
            yield "copy"
        if not set(targets) <= ball.holders:
            return  # a target no longer holds it as current: every extra copy stays
    for peer_id in extra:
        ball.holders.discard(peer_id)
        yield "drop"


def simulate(rng: random.Random, trial: int, broken: str = "") -> tuple[int, int]:
    """Random peer sets and interleaving for one ball; (fewest copies after a drop, smallest rf)."""
    key = f"ball-{trial}"
    rfs = [rng.choice((1, 2, 3)) for _ in range(rng.choice((2, 3)))]
    initial = rng.sample(UNIVERSE, rng.randint(max(rfs), len(UNIVERSE)))
    ball = Ball(set(rank(initial, BUCKET, key)[:max(rfs)]))  # written on its top rf of the old set
    routers = []
    for rf in rfs:
        present = rng.sample(UNIVERSE, rng.randint(rf, len(UNIVERSE)))
        routers.append(router_steps(ball, present, key, rf, broken))
    fewest = len(ball.holders)
    while routers:
        router = rng.choice(routers)
        step = next(router, None)
        if step is None:
            routers.remove(router)
        elif step == "drop":
            fewest = min(fewest, len(ball.holders))
    return fewest, min(rfs)


def test_routers_with_different_peer_sets_never_drop_a_ball_below_rf() -> None:
    rng = random.Random(16)
    short = []
    for trial in range(TRIALS):
        fewest, rf = simulate(rng, trial)
        if fewest < rf:
            short.append((trial, fewest, rf))
    assert short == []


@pytest.mark.parametrize("broken", [SKIP_COPY_AND_CHECK, DROPS_OUTSIDE_ITS_SET])
def test_the_simulation_catches_a_broken_rule(broken: str) -> None:
    rng = random.Random(16)
    losses = 0
    for trial in range(TRIALS):
        fewest, rf = simulate(rng, trial, broken)
        losses += fewest < rf
    assert losses > 0  # the check of the real rule above has teeth


def test_plan_ball_drops_only_peers_of_its_own_set_outside_its_targets() -> None:
    present = UNIVERSE[:6]
    holders = [*UNIVERSE[:6], "unknown-peer"]
    targets, missing, extra = plan_ball(present, BUCKET, "k", holders, 2)
    assert targets == rank(present, BUCKET, "k")[:2] and missing == []
    assert sorted(extra) == sorted(set(present) - set(targets))  # never a peer it does not plan on
    targets, missing, extra = plan_ball(present, BUCKET, "k", [], 2)
    assert missing == targets and extra == []


@pytest.mark.parametrize(("argv", "env", "expected"), [
    ([], None, True),  # on by default
    (["--rebalance-drop-surplus", "off"], None, False),
    ([], "off", False),
    (["--rebalance-drop-surplus", "on"], "off", True),  # the flag wins over the environment
])
def test_drop_surplus_option(monkeypatch: pytest.MonkeyPatch, argv: list[str], env: str | None,
                             expected: bool) -> None:
    if env is None:
        monkeypatch.delenv("MICTLANX_REBALANCE_DROP_SURPLUS", raising=False)
    else:
        monkeypatch.setenv("MICTLANX_REBALANCE_DROP_SURPLUS", env)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.build_config(parser.parse_args(argv)).rebalance_drop_surplus is expected


def test_a_bad_drop_surplus_value_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICTLANX_REBALANCE_DROP_SURPLUS", "yes")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    with pytest.raises(SystemExit, match="MICTLANX_REBALANCE_DROP_SURPLUS"):
        cli.build_config(parser.parse_args([]))
