"""Schemathesis against the served OpenAPI document of a real `tiddly serve`, on SQLite and PostgreSQL.

Every operation gets a bounded number of generated requests (valid and invalid);
no response may be a server error or contradict the document (status code,
content type, headers, body schema).
"""
from __future__ import annotations

import pytest
import schemathesis
from conftest import _prepare_server, server_url
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks
from serving import LiveServer

EXAMPLES_PER_OPERATION = 10
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_schema(request, tmp_path_factory, prepared_servers):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('schemathesis') / 'tiddly.db'}"
    else:
        url = server_url(request.param)
        if url not in prepared_servers:
            _prepare_server(url)
            prepared_servers[url] = True
    server = LiveServer(url, workers=1, threads=4)
    request.addfinalizer(server.stop)
    return schemathesis.openapi.from_url(server.url + "/-/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
# Random generation only: schemathesis's deterministic coverage phase alone takes minutes here.
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
          phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
def test_no_server_error_and_no_response_contradicts_the_document(case):
    case.call_and_validate(checks=CHECKS, timeout=10)


class _Workflow:
    """Mixin: the stateful run checks the same things as the per-operation run."""

    def validate_response(self, response, case, additional_checks=None, **kwargs):
        case.validate_response(response, checks=CHECKS)


def test_stateful_links_write_then_read_update_delete(api_schema):
    machine = api_schema.as_state_machine()
    workflow = type("Workflow", (_Workflow, machine), {})
    workflow.run(settings=settings(max_examples=10, stateful_step_count=4, deadline=None, database=None,
                                   suppress_health_check=list(HealthCheck)))
