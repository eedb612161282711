"""The Azure Functions entry point: the app and its blueprints, nothing else."""

import azure.durable_functions as df
import azure.functions as func

from activities.callback_steps import bp as callback_activities
from activities.export_steps import bp as export_activities
from activities.package_steps import bp as package_activities
from intake.gate_api import bp as gate_routes
from intake.health_api import bp as health_check
from intake.http_api import bp as http_intake
from intake.jwks import bp as receipt_keys
from intake.lifecycle_api import bp as lifecycle_routes
from intake.package_api import bp as package_routes
from intake.queue_intake import bp as queue_intake
from intake.retention import bp as retention
from intake.review_api import bp as review_routes
from intake.tenants_api import bp as tenant_routes
from orchestrations.deliver_notice import bp as notice_orchestration
from orchestrations.export_personal_data import bp as export_orchestration
from orchestrations.package_export import bp as package_orchestration
from orchestrations.submit_gate import bp as submit_gate

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(export_orchestration)
app.register_functions(notice_orchestration)
app.register_functions(package_orchestration)
app.register_functions(submit_gate)
app.register_functions(export_activities)
app.register_functions(callback_activities)
app.register_functions(package_activities)
app.register_functions(http_intake)
app.register_functions(queue_intake)
app.register_functions(health_check)
app.register_functions(gate_routes)
app.register_functions(lifecycle_routes)
app.register_functions(retention)
app.register_functions(receipt_keys)
app.register_functions(package_routes)
app.register_functions(review_routes)
app.register_functions(tenant_routes)
