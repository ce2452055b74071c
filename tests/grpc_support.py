"""The OTLP/gRPC receiver (agentloop/traces/otlp_grpc.py) on a free port of the test process."""

from __future__ import annotations

import asyncio
import threading

from agentloop.traces import otlp_grpc


class Receiver:
    """The gRPC receiver on its own event loop in a thread, on a free port."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)

            async def start():
                self.server, self.port = otlp_grpc.make_server("127.0.0.1", 0)
                await self.server.start()
                ready.set()

            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
