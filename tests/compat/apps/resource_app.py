"""gevent-websocket's own Resource + WebSocketApplication, in the style of its chat example.

/echo echoes; /chat takes JSON: {"msg_type": "update_clients", "nickname": ...} names the
sender's `self.ws.handler.active_client` and answers the nicknames of every client in
`self.ws.handler.server.clients`; {"msg_type": "message", ...} is broadcast to all of them
through each client's `ws`. on_open, on_message and on_close are recorded (GET /_events).
"""

from __future__ import annotations

import json
from collections import OrderedDict

from geventwebsocket import Resource, WebSocketApplication
from journal import events_app, record


class EchoApplication(WebSocketApplication):
    def on_open(self):
        self.peer = self.ws.environ["REMOTE_PORT"]  # environ is gone once closed
        record("open", app="echo", peer=self.peer)

    def on_message(self, message):
        if message is None:  # the peer closed: the next receive() ends the loop
            return
        record("message", app="echo", peer=self.peer)
        self.ws.send(message)

    def on_close(self, reason):
        record("close", app="echo", peer=self.peer)


class ChatApplication(WebSocketApplication):
    def on_open(self):
        self.peer = self.ws.environ["REMOTE_PORT"]
        record("open", app="chat", peer=self.peer)

    def on_message(self, message):
        if message is None:
            return
        record("message", app="chat", peer=self.peer)
        message = json.loads(message)
        if message["msg_type"] == "message":
            self.broadcast(message)
        elif message["msg_type"] == "update_clients":
            self.send_client_list(message)

    def send_client_list(self, message):
        current_client = self.ws.handler.active_client
        current_client.nickname = message["nickname"]
        self.ws.send(json.dumps({
            "msg_type": "update_clients",
            "clients": [getattr(client, "nickname", "anonymous")
                        for client in self.ws.handler.server.clients.values()],
        }))

    def broadcast(self, message):
        for client in self.ws.handler.server.clients.values():
            client.ws.send(json.dumps({
                "msg_type": "message",
                "nickname": message["nickname"],
                "message": message["message"],
            }))

    def on_close(self, reason):
        record("close", app="chat", peer=self.peer)


resource = Resource(OrderedDict([
    ("^/echo", EchoApplication),
    ("^/chat", ChatApplication),
    ("^/_events", events_app),
]))
