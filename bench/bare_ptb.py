"""The framework floor for ingest: a python-telegram-bot bot that only acknowledges.

``python -m bench.bare_ptb BASE_URL TOKEN`` polls ``getUpdates`` with the same client
settings as peerdesk's Telegram adapter, lets PTB parse every update into its objects,
and moves the offset past it: everything peerdesk does, minus storing and detecting.
It stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

os.environ.setdefault("PTB_TIMEDELTA", "1")

from telegram import Bot
from telegram.request import HTTPXRequest

ALLOWED_UPDATES = ["message", "edited_message", "my_chat_member"]
POLL_TIMEOUT = 1


async def acknowledge(base_url: str, token: str, stop: asyncio.Event) -> int:
    bot = Bot(
        token,
        base_url=base_url,
        request=HTTPXRequest(connect_timeout=20, read_timeout=20, write_timeout=20),
        get_updates_request=HTTPXRequest(connect_timeout=20, read_timeout=POLL_TIMEOUT + 20),
    )
    await bot.initialize()
    offset: int | None = None
    seen = 0
    try:
        while not stop.is_set():
            updates = await bot.get_updates(
                offset=offset, timeout=POLL_TIMEOUT, allowed_updates=ALLOWED_UPDATES
            )
            for update in updates:
                seen += 1 if update.effective_message is not None else 0
                offset = update.update_id + 1
    finally:
        if offset is not None:
            await bot.get_updates(offset=offset, limit=1, timeout=0)
        await bot.shutdown()
    return seen


async def main(argv: list[str]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await acknowledge(argv[0], argv[1], stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
