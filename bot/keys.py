"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web

from bot.agenda import Agenda
from bot.channel import Channel, MediaSource
from bot.engine import Engine
from bot.handoff import Desk
from bot.outbox import Dispatcher
from bot.scheduler import Scheduler
from bot.settings import Settings
from storage.db import Database

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
ENGINE = web.AppKey("engine", Engine)
DESK = web.AppKey("desk", Desk)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
SCHEDULER = web.AppKey("scheduler", Scheduler)
AGENDA = web.AppKey("agenda", Agenda)
MEDIA: web.AppKey[dict[Channel, MediaSource]] = web.AppKey("media")
