"""Create or update the platform's Prefect automations by name (idempotent): the chart's work-pool
Job and the local stack both run this file with the JSON files beside it.

    python automations.py automations.json [notifications.json]

notifications.json holds the automations that send a message (a failed or crashed run, a run Pending
too long, a rejected candidate). They are made only when TRIP_DURATION_NOTIFY_URL is set (the chart
reads it from the Secret in notifications.existingSecret): the URL is kept in a
CustomWebhookNotificationBlock, as a secret field, which POSTs ``{"text": "<subject>\\n<body>"}``
(what a Slack incoming webhook takes). TRIP_DURATION_PENDING_ALERT_S is the Pending bound in seconds.
Without the URL, those automations are deleted: turning notifications off leaves none behind.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore

BLOCK_NAME = "trip-duration-alerts"
PENDING_ALERT_S = 900


def upsert(specs: list[dict]) -> None:
    with get_client(sync_client=True) as client:
        for spec in specs:
            automation = AutomationCore.model_validate(spec)
            found = client.read_automations_by_name(automation.name)
            for extra in found[1:]:  # one per name
                client.delete_automation(extra.id)
            if found:
                client.update_automation(found[0].id, automation)
                print(f"automation {automation.name!r} updated")
            else:
                client.create_automation(automation)
                print(f"automation {automation.name!r} created")


def delete(names: list[str]) -> None:
    with get_client(sync_client=True) as client:
        for name in names:
            for found in client.read_automations_by_name(name):
                client.delete_automation(found.id)
                print(f"automation {name!r} deleted (notifications are off)")


def substitute(value: Any, values: dict[str, Any]) -> Any:
    """``"${NAME}"`` becomes ``values[NAME]`` (keeping its type); inside longer strings, its text."""
    if isinstance(value, dict):
        return {k: substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if isinstance(value, str):
        for name, replacement in values.items():
            if value == f"${{{name}}}":
                return replacement
            value = value.replace(f"${{{name}}}", str(replacement))
    return value


def notification_block(url: str) -> str:
    """Save the webhook block (the URL as a secret value, never shown by the API); returns its id."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name="trip-duration",
        url="{{webhookUrl}}",
        method="POST",
        json_data={"text": "{{subject}}\n{{body}}"},
        secrets={"webhookUrl": url},
    )
    return str(block.save(BLOCK_NAME, overwrite=True))


def pending_alert_s(environ: dict[str, str] | os._Environ = os.environ) -> int:
    raw = environ.get("TRIP_DURATION_PENDING_ALERT_S") or str(PENDING_ALERT_S)
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if seconds < 10:
        raise SystemExit(f"TRIP_DURATION_PENDING_ALERT_S={raw!r} is not a whole number of seconds >= 10: "
                         f"set notifications.pendingAlertSeconds to e.g. {PENDING_ALERT_S}")
    return seconds


def notifications(specs: list[dict], environ: dict[str, str] | os._Environ = os.environ) -> None:
    url = environ.get("TRIP_DURATION_NOTIFY_URL", "").strip()
    if not url:
        delete([spec["name"] for spec in specs])
        return
    if not url.startswith(("http://", "https://")):
        raise SystemExit("the notification URL (TRIP_DURATION_NOTIFY_URL, from notifications.existingSecret) "
                         "does not start with http:// or https://: put the webhook's full URL in the Secret")
    values = {"NOTIFY_BLOCK_ID": notification_block(url), "PENDING_ALERT_S": pending_alert_s(environ)}
    upsert(substitute(specs, values))
    print(f"notifications on: block {BLOCK_NAME!r}, Pending bound {values['PENDING_ALERT_S']} s")


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        upsert(json.load(f))
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            notifications(json.load(f))
