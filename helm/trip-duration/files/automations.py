"""Create or update the platform's Prefect automations by name (idempotent): the chart's work-pool
Job and the local stack both run this file with the JSON beside it.

    python automations.py automations.json
"""

from __future__ import annotations

import json
import sys

from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore


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


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        upsert(json.load(f))
