"""``asymk-talker serve``: the live avatar over a WebSocket, with the page that talks to it."""
