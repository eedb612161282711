"""A small Durable Functions app exercising every orchestrator feature the engine supports.

``make_app(variant)`` builds a fresh DFApp each call so tests can run two versions of the
same orchestrator (variant 2 renames an activity) against one store.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

# Shared with the tests: per-key attempt counters and gates for blocking activities.
CALLS: Counter[str] = Counter()
GATES: dict[str, threading.Event] = {}


def make_app(variant: int = 1) -> df.DFApp:
    bp = df.Blueprint()

    @bp.orchestration_trigger(context_name="context")
    def seq_orch(context: df.DurableOrchestrationContext):
        names = context.get_input()["names"]
        out = []
        for i, name in enumerate(names):
            out.append((yield context.call_activity("greet", name)))
            context.set_custom_status({"done": i + 1})
        return out

    @bp.orchestration_trigger(context_name="context")
    def fanout_orch(context: df.DurableOrchestrationContext):
        names = context.get_input()["names"]
        return (yield context.task_all([context.call_activity("greet", n) for n in names]))

    @bp.orchestration_trigger(context_name="context")
    def retry_orch(context: df.DurableOrchestrationContext):
        args = context.get_input()
        before = context.current_utc_datetime
        result = yield context.call_activity_with_retry(
            "flaky", df.RetryOptions(60_000, args["attempts"]), args
        )
        after = context.current_utc_datetime
        done = yield context.call_activity("greet", "after-retry")
        return {"result": result, "waited_s": (after - before).total_seconds(), "next": done}

    @bp.orchestration_trigger(context_name="context")
    def timer_orch(context: df.DurableOrchestrationContext):
        fire_at = context.current_utc_datetime + timedelta(days=context.get_input()["days"])
        yield context.create_timer(fire_at)
        return {"fire_at": fire_at.isoformat(), "now": context.current_utc_datetime.isoformat()}

    @bp.orchestration_trigger(context_name="context")
    def can_orch(context: df.DurableOrchestrationContext):
        state = context.get_input()
        yield context.call_activity("greet", str(state["n"]))
        if state["n"] < state["limit"]:
            context.continue_as_new({"n": state["n"] + 1, "limit": state["limit"]})
            return None
        return {"n": state["n"]}

    @bp.orchestration_trigger(context_name="context")
    def event_orch(context: df.DurableOrchestrationContext):
        context.set_custom_status("waiting")
        approval = context.wait_for_external_event("approval")
        timeout = context.create_timer(context.current_utc_datetime + timedelta(days=1))
        winner = yield context.task_any([approval, timeout])
        if winner == approval:
            timeout.cancel()
            return {"approved": approval.result}
        return "timed out"

    @bp.orchestration_trigger(context_name="context")
    def late_wait_orch(context: df.DurableOrchestrationContext):
        yield context.call_activity("gate", context.get_input())
        return (yield context.wait_for_external_event("approval"))

    @bp.orchestration_trigger(context_name="context")
    def diverge_orch(context: df.DurableOrchestrationContext):
        first = "step_a" if variant == 1 else "step_a2"
        yield context.call_activity(first, "x")
        yield context.create_timer(context.current_utc_datetime + timedelta(hours=1))
        return (yield context.call_activity("step_b", "y"))

    @bp.orchestration_trigger(context_name="context")
    def gate_orch(context: df.DurableOrchestrationContext):
        return (yield context.call_activity("gate", context.get_input()))

    @bp.orchestration_trigger(context_name="context")
    def failing_orch(context: df.DurableOrchestrationContext):
        yield context.call_activity("greet", "x")
        raise ValueError("orchestrator exploded")

    @bp.orchestration_trigger(context_name="context")
    def sub_orch(context: df.DurableOrchestrationContext):
        return (yield context.call_sub_orchestrator("seq_orch", {"names": []}))

    @bp.orchestration_trigger(context_name="context")
    def counter_orch(context: df.DurableOrchestrationContext):
        """Signals ``adds`` increments to a counter, then calls it for the total."""
        args = context.get_input()
        counter = df.EntityId("counter", args["key"])
        for _ in range(args["adds"]):
            context.signal_entity(counter, "add", 1)
        if args.get("wait_days"):
            yield context.create_timer(
                context.current_utc_datetime + timedelta(days=args["wait_days"])
            )
        try:
            total = yield context.call_entity(counter, args.get("read", "get"))
        except Exception as exc:  # noqa: BLE001 - the entity's error reaches the caller
            return {"error": str(exc)}
        return {"total": total}

    @bp.entity_trigger(context_name="context")
    def counter(context: df.DurableEntityContext) -> None:
        value = context.get_state(lambda: 0)
        if context.operation_name == "add":
            value += context.get_input()
            context.set_state(value)
        elif context.operation_name == "get":
            context.set_result(value)
        else:
            raise ValueError(f"no operation {context.operation_name}")

    @bp.activity_trigger(input_name="name")
    def greet(name: str) -> str:
        return f"hello {name}"

    @bp.activity_trigger(input_name="args")
    def flaky(args: dict[str, Any]) -> str:
        CALLS[args["key"]] += 1
        if CALLS[args["key"]] <= args["fail_times"]:
            raise ValueError(f"flaky failure {CALLS[args['key']]}")
        return f"ok after {CALLS[args['key']]}"

    @bp.activity_trigger(input_name="value")
    def step_a(value: str) -> str:
        return "a"

    @bp.activity_trigger(input_name="value")
    def step_a2(value: str) -> str:
        return "a2"

    @bp.activity_trigger(input_name="value")
    def step_b(value: str) -> str:
        return "b"

    @bp.activity_trigger(input_name="key")
    def gate(key: str) -> int:
        CALLS[key] += 1
        event = GATES.get(key)
        if event is not None and CALLS[key] == 1:
            event.wait(10)
        return CALLS[key]

    @bp.route(route="admin/{op}", methods=["POST"])
    @bp.durable_client_input(client_name="client")
    async def admin(
        req: func.HttpRequest, client: df.DurableOrchestrationClient
    ) -> func.HttpResponse:
        """Drive one client operation per request, through the SDK's unmodified client."""
        op = req.route_params["op"]
        args = req.get_json()
        result: Any
        if op == "start":
            result = await client.start_new(args["name"], args.get("id"), args.get("input"))
        elif op == "status":
            status = await client.get_status(
                args["id"], show_history=args.get("history", False), show_input=True
            )
            result = status.to_json() if status else None
            if status and hasattr(status, "historyEvents"):
                result["historyEvents"] = status.historyEvents
        elif op == "terminate":
            await client.terminate(args["id"], args["reason"])
            result = "ok"
        elif op == "raise":
            await client.raise_event(args["id"], args["event"], args.get("data"))
            result = "ok"
        elif op == "purge":
            result = (await client.purge_instance_history(args["id"])).instances_deleted
        elif op == "list":
            statuses = [df.OrchestrationRuntimeStatus(s) for s in args.get("statuses", [])]
            found = await client.get_status_by(runtime_status=statuses or None)
            result = sorted(s.instance_id for s in found)
        else:
            return func.HttpResponse("unknown op", status_code=400)
        return func.HttpResponse(json.dumps(result), mimetype="application/json")

    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(bp)
    return app
