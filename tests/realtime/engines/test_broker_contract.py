"""The Broker contract (engines/base.py), on the memory broker (one process) and the Redis
broker (two processes): every process gets each message once and in order, operations reach
every process, and the handler hears when an outage ends."""

from __future__ import annotations

import json

import pytest

from realtime.engines.conftest import wait_for
from realtime.engines.test_store_contract import pub
from wsapp.realtime.messages import message_raw


class Handler:
    """A BrokerHandler that records what it is handed."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str]] = []
        self.controls: list[str] = []
        self.resumptions = 0

    def deliver(self, channel: str, text: str) -> None:
        self.delivered.append((channel, text))

    def control(self, payload: str) -> None:
        self.controls.append(payload)

    def resumed(self) -> None:
        self.resumptions += 1


def live(channel: str, msg: str) -> str:
    """An envelope the store did not number (offset null), as a live feed publishes."""
    return message_raw(channel, None, msg, "1", None, 0)


@pytest.fixture
def started(engines):
    """(brokers, handlers): one broker per process, each started with its own handler."""
    brokers = engines.processes("broker", 2)
    handlers = [Handler() for _ in brokers]
    for broker, handler in zip(brokers, handlers, strict=True):
        broker.start(handler)
    return brokers, handlers


def test_every_process_gets_each_message_once_in_order(started):
    brokers, handlers = started
    sent: dict[int, list[tuple[str, str]]] = {i: [] for i in range(len(brokers))}
    for n in range(20):  # the processes take turns publishing
        i = n % len(brokers)
        envelope = ("room:a", live("room:a", f"p{i}-{n}"))
        brokers[i].publish(*envelope)
        sent[i].append(envelope)
    everything = sorted(e for envelopes in sent.values() for e in envelopes)
    for handler in handlers:
        wait_for(lambda h=handler: len(h.delivered) >= 20, what="20 deliveries")
        assert sorted(handler.delivered) == everything  # each message once, none lost
        for i, envelopes in sent.items():  # and each publisher's in the order it sent them
            assert [d for d in handler.delivered if f'"msg":"p{i}-' in d[1]] == envelopes


def test_operations_reach_every_process(started):
    brokers, handlers = started
    brokers[0].control('{"op":"disconnect","user":"ann"}')
    for handler in handlers:
        wait_for(lambda h=handler: h.controls, what="the operation")
        assert handler.controls == ['{"op":"disconnect","user":"ann"}']
        assert handler.delivered == []


def test_health_is_up(started):
    brokers, _ = started
    assert all(b.health()["state"] == "up" for b in brokers)
    assert all(h.resumptions == 0 for h in started[1])  # starting is not resuming


@pytest.mark.parametrize("channel", ["room:a\nroom:b", "room:\u00e9t\u00e9", "room:12:34",
                                     "room:x\r\n\x00"])
def test_a_channel_name_reaches_every_process_exactly_as_published(started, channel):
    """The bus frames a message whatever its channel holds: Redis once split on the first
    newline, so `room:a\\nroom:b` reached room:a subscribers with a broken envelope. (Names
    like these are refused at the edge; the bus must not depend on it.)"""
    brokers, handlers = started
    envelope = live(channel, "nl")
    brokers[0].publish(channel, envelope)
    for handler in handlers:
        wait_for(lambda h=handler: len(h.delivered) >= 1, what="a delivery")
        assert handler.delivered == [(channel, envelope)]


def test_a_message_the_store_numbered_keeps_its_channel_on_the_bus(engines):
    """The Redis store's script publishes what it numbers, framed as the broker frames: a
    channel with a newline cannot split it, and each channel keeps its own counter."""
    if engines.flavour != "redis":
        pytest.skip("only the Redis store publishes on its own")
    broker, handler = engines.open("broker"), Handler()
    broker.start(handler)
    store = engines.open("store")
    store.apply([pub("room:a\nroom:b", "m1"), pub("room:\u00e9", "m2")])
    wait_for(lambda: len(handler.delivered) >= 2, what="2 deliveries")
    assert [channel for channel, _ in handler.delivered] == ["room:a\nroom:b", "room:\u00e9"]
    assert [json.loads(text)["offset"] for _, text in handler.delivered] == [1, 1]
