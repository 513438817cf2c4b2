"""What a webhook does with a message before it answers: nothing slow, no call to the service."""

from __future__ import annotations

import logging

from . import background, limits
from .conf import parse_rate
from .messages import IncomingMessage, masked
from .messenger import Messenger

logger = logging.getLogger("visual_search")


def receive(messenger: Messenger, message: IncomingMessage, site_url: str | None = None) -> bool:
    """Hand ``message`` to the background unless it is a delivery seen before; returns whether it was new.

    A chat over its ``RATE`` is told to wait, once per window, and its message is not searched.
    """
    if not limits.first_time(messenger.name, message.event_id):
        # Not the delivery's id: a WhatsApp message id encodes the customer's phone number.
        logger.info("%s: a delivery from chat %s seen before; ignored", messenger.name, masked(message.chat_id))
        return False
    rate = parse_rate(messenger.settings.RATE)
    if limits.allow(messenger.name, message.chat_id, rate):
        background.run(messenger, message, site_url)
    elif limits.warn_once(messenger.name, message.chat_id, rate):
        logger.info("%s: chat %s is over its rate (%s)", messenger.name, masked(message.chat_id), messenger.settings.RATE)
        background.run(messenger, message, site_url, limited=True)
    return True
