"""A toy function app for the trigger host's tests: one function per behaviour under test.

`build_app()` makes a fresh app each time because `get_functions()` may be called only once per
app object; the functions report to a `Recorder` the test owns.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import azure.durable_functions as df
import azure.functions as func

QUEUE = "toy-items"
CLIENT_QUEUE = "toy-client-items"
LEAKY_TEXT = "personal-data-jane@example.com"


@dataclass
class Recorder:
    lock: threading.Lock = field(default_factory=threading.Lock)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    barrier: threading.Barrier = field(default_factory=lambda: threading.Barrier(20, timeout=10))

    def add(self, name: str, **data: Any) -> None:
        with self.lock:
            self.events.append((name, data))

    def of(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [data for event, data in self.events if event == name]


def build_app(rec: Recorder) -> df.DFApp:
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="hello/{name:alpha}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def hello(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(f"hello {req.route_params['name']}")

    @app.route(route="items/{id:int}/{part?}", methods=["GET", "POST"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        body = {
            "method": req.method,
            "url": req.url,
            "route": dict(req.route_params),
            "params": {k: v for k, v in req.params.items() if k != "code"},
            "body": req.get_body().decode(),
            "x_test": req.headers.get("x-test"),
        }
        return func.HttpResponse(json.dumps(body), mimetype="application/json", status_code=201)

    @app.route(route="admin/ping", auth_level=func.AuthLevel.ADMIN)
    def admin_ping(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pong")

    @app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError(LEAKY_TEXT)

    @app.route(route="cookies", auth_level=func.AuthLevel.ANONYMOUS)
    def cookies(req: func.HttpRequest) -> func.HttpResponse:
        response = func.HttpResponse(b"\x00\x01", mimetype="application/octet-stream")
        response.headers.add("Set-Cookie", "a=1")
        response.headers.add("Set-Cookie", "b=2")
        return response

    @app.route(route="together", auth_level=func.AuthLevel.ANONYMOUS)
    def together(req: func.HttpRequest) -> func.HttpResponse:
        rec.barrier.wait()  # only passes if 20 requests run at the same time
        return func.HttpResponse("ok")

    @app.route(route="async/{*rest}", auth_level=func.AuthLevel.ANONYMOUS)
    async def async_catch_all(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return func.HttpResponse(f"{req.route_params['rest']}|{context.function_name}")

    @app.route(route="status/{instanceId}", methods=["GET"])
    @app.durable_client_input(client_name="starter")
    async def status(req: func.HttpRequest, starter: df.DurableOrchestrationClient) -> Any:
        result = await starter.get_status(req.route_params["instanceId"])
        return func.HttpResponse(
            json.dumps({"status": result.runtime_status.value if result.runtime_status else None})
        )

    @app.queue_trigger(arg_name="msg", queue_name=QUEUE, connection="ToyStorage")
    def on_item(msg: func.QueueMessage) -> None:
        body = msg.get_body().decode()
        rec.add(
            "queue",
            body=body,
            dequeue_count=msg.dequeue_count,
            id=msg.id,
            pop_receipt=msg.pop_receipt,
            inserted=msg.insertion_time,
        )
        if body.startswith("fail"):
            raise ValueError(LEAKY_TEXT)

    @app.queue_trigger(arg_name="item", queue_name=CLIENT_QUEUE, connection="ToyStorage")
    @app.durable_client_input(client_name="client")
    async def on_client_item(
        item: func.QueueMessage, client: df.DurableOrchestrationClient
    ) -> None:
        hub = client._orchestration_bindings.task_hub_name  # the SDK parsed the binding JSON
        rec.add("client_queue", body=item.get_body().decode(), hub=hub)

    @app.timer_trigger(schedule="* * * * * *", arg_name="timer", run_on_startup=True)
    def tick(timer: func.TimerRequest) -> None:
        rec.add("tick", past_due=timer.past_due)

    @app.orchestration_trigger(context_name="context")
    def toy_orchestrator(context: df.DurableOrchestrationContext) -> Any:
        return (yield context.call_activity("toy_activity", 1))

    @app.activity_trigger(input_name="value")
    def toy_activity(value: int) -> int:
        return value

    return app
