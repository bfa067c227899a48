"""Typed keys for what the aiohttp application holds (sub-apps read them via `config_dict`)."""

from __future__ import annotations

import telegram
from aiohttp import web

from bot import live
from bot.conversation.engine import Engine
from bot.conversation.materials import Library
from bot.conversation.scripts import ScriptVersions
from bot.conversation.understanding import Understanding
from bot.core.channel import Channel, MediaSource
from bot.crm.duplicates import Duplicates
from bot.crm.leads import Records
from bot.crm.pipelines import Pipelines
from bot.crm.webhooks import Endpoints
from bot.delivery.dispatcher import Dispatcher
from bot.delivery.webhooks import WebhookDispatcher
from bot.desk.accounts import Accounts
from bot.desk.agenda import Agenda
from bot.desk.handoff import Desk
from bot.followup.scheduler import Scheduler
from bot.metrics import Metrics
from bot.reports.service import Reporting
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
REPORTS = web.AppKey("reports", Reporting)
MEDIA: web.AppKey[dict[Channel, MediaSource]] = web.AppKey("media")
ACCOUNTS = web.AppKey("accounts", Accounts)
SIGNALS = web.AppKey("signals", live.Signals)
TELEGRAM_BOT = web.AppKey("telegram_bot", telegram.Bot)
PIPELINES = web.AppKey("pipelines", Pipelines)
RECORDS = web.AppKey("records", Records)
DUPLICATES = web.AppKey("duplicates", Duplicates)
WEBHOOKS = web.AppKey("webhooks", WebhookDispatcher)
ENDPOINTS = web.AppKey("endpoints", Endpoints)
MATERIALS = web.AppKey("materials", Library)
