"""Reminders before an appointment: to the lead (24 h and 1 h before) and to its agent."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.core.booking import KIND_WORDS
from bot.core.model import AppointmentState
from bot.core.slots import spanish_moment
from bot.followup.actions import (
    DONE,
    REMINDER_AGENT,
    REMINDER_LEAD,
    STAGED,
    Fired,
    later,
    skipped,
)
from bot.followup.outreach import Outreach
from bot.settings import RemindersSettings
from storage.models import Appointment, ScheduledAction
from storage.uow import UnitOfWork

# A reminder this close to its appointment goes out even in quiet hours.
URGENT = timedelta(hours=1)
# Reminders at least this long before say "mañana"/"el jueves"; later ones say "en un rato".
DAY_AHEAD = 720


class Reminders:
    def __init__(self, settings: RemindersSettings, outreach: Outreach, tz: ZoneInfo) -> None:
        self.settings = settings
        self.outreach = outreach
        self.tz = tz  # the business's, for agents

    async def plan(self, uow: UnitOfWork, appointment: Appointment, now: datetime) -> None:
        """Reminders before an appointment; those whose moment has already gone are left out."""
        for kind, minutes_list in (
            (REMINDER_LEAD, self.settings.lead_minutes),
            (REMINDER_AGENT, self.settings.agent_minutes),
        ):
            for minutes in minutes_list:
                due = appointment.starts_at - timedelta(minutes=minutes)
                if due > now:
                    await uow.actions.add(
                        kind=kind,
                        due_at=due,
                        payload={"minutes": minutes},
                        lead_id=appointment.lead_id,
                        appointment_id=appointment.id,
                        created_at=now,
                    )

    async def withdraw(self, uow: UnitOfWork, appointment_id: int, now: datetime) -> None:
        await uow.actions.withdraw(now, "appointment changed", appointment_id=appointment_id)

    async def to_lead(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        appointment = await self._live(uow, action, now)
        if isinstance(appointment, Fired):
            return appointment
        lead = await uow.leads.get(appointment.lead_id)
        if lead is None or lead.opted_out_at is not None:
            return skipped("lead opted out")
        tz = ZoneInfo(lead.timezone)
        morning = self.outreach.quiet_until(now, tz)
        if morning is not None and appointment.starts_at - now > URGENT:
            return later("quiet hours", morning)
        conversation = await self.outreach.conversation(uow, lead, appointment.conversation_id)
        if conversation is None:
            return skipped("lead has no conversation")
        span = "day" if action.payload.get("minutes", 0) >= DAY_AHEAD else "soon"
        values = self.outreach.values(
            lead,
            {
                "fecha": spanish_moment(appointment.starts_at, tz, now),
                "tipo": KIND_WORDS.get(appointment.kind, "la cita"),
            },
        )
        script = f"{REMINDER_LEAD}.{span}"
        await self.outreach.to_lead(uow, conversation, script, values, now, seed=f"r{action.id}")
        return STAGED

    async def to_agent(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        appointment = await self._live(uow, action, now)
        if isinstance(appointment, Fired):
            return appointment
        lead = await uow.leads.get(appointment.lead_id)
        if lead is None:
            return skipped("lead gone")
        values = self.outreach.values(
            lead,
            {
                "fecha": spanish_moment(appointment.starts_at, self.tz, now),
                "tipo": KIND_WORDS.get(appointment.kind, appointment.kind),
            },
        )
        text = self.outreach.render(REMINDER_AGENT, seed=f"r{action.id}", values=values)
        staged = await self.outreach.to_agent(
            uow, appointment.agent_id, "reminder", text, lead.id, now
        )
        return STAGED if staged else DONE

    @staticmethod
    async def _live(uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Appointment | Fired:
        appointment = (
            await uow.appointments.get(action.appointment_id) if action.appointment_id else None
        )
        if appointment is None or appointment.state != AppointmentState.CONFIRMED:
            return skipped("appointment cancelled")
        if appointment.starts_at <= now:
            # Came due while the service was down: reminding of the past helps nobody.
            return skipped("appointment already passed")
        return appointment
