"""Typed keys for what the aiohttp application holds (sub-apps read them via `config_dict`)."""

from __future__ import annotations

import telegram
from aiohttp import web

from bot import live
from bot.conversation.engine import Engine
from bot.conversation.scripts import ScriptVersions
from bot.conversation.understanding import Understanding
from bot.core.channel import Channel, MediaSource
from bot.delivery.dispatcher import Dispatcher
from bot.desk.accounts import Accounts
from bot.desk.agenda import Agenda
from bot.desk.handoff import Desk
from bot.followup.scheduler import Scheduler
from bot.metrics import Metrics
from bot.settings import Settings
from storage.db import Database

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
METRICS = web.AppKey("metrics", Metrics)
UNDERSTANDING = web.AppKey("understanding", Understanding)
SCRIPTS = web.AppKey("scripts", ScriptVersions)
ENGINE = web.AppKey("engine", Engine)
DESK = web.AppKey("desk", Desk)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
SCHEDULER = web.AppKey("scheduler", Scheduler)
AGENDA = web.AppKey("agenda", Agenda)
MEDIA: web.AppKey[dict[Channel, MediaSource]] = web.AppKey("media")
ACCOUNTS = web.AppKey("accounts", Accounts)
SIGNALS = web.AppKey("signals", live.Signals)
TELEGRAM_BOT = web.AppKey("telegram_bot", telegram.Bot)
