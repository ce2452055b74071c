"""The span page reads OpenInference attributes as people do; the session page, a session."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from tests.span_factory import make_span

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def span_page(client, span) -> str:
    url = reverse("span-detail", args=[span.project_id, span.span_id])
    response = client.get(url, {"trace": span.trace_id})
    assert response.status_code == 200
    return response.content.decode()


def test_an_llm_span_shows_its_chat_with_roles_and_tool_calls(client_for, carol, project):
    llm = make_span(
        project,
        kind="LLM",
        attributes={
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "You answer about orders.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.contents.0.message_content.text": "Where is order 42?",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_1",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup_order",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": json.dumps(
                {"order_id": 42}
            ),
        },
    )

    page = span_page(client_for(carol), llm)  # a viewer may read it

    chat = page[page.index('id="span-messages"') :]
    roles = re.findall(r'<div class="message role-(\w+) (input|output)">', chat)
    assert roles == [("system", "input"), ("user", "input"), ("assistant", "output")]
    assert chat.index("You answer about orders.") < chat.index("Where is order 42?")
    assert 'calls <strong class="mono">lookup_order</strong>' in chat
    assert "&quot;order_id&quot;: 42" in chat  # the arguments, indented JSON


def test_a_retriever_span_lists_its_documents_with_scores(client_for, alice, project):
    retriever = make_span(
        project,
        kind="RETRIEVER",
        attributes={
            "retrieval.documents.0.document.id": "kb-7",
            "retrieval.documents.0.document.content": "Refunds take 5 days.",
            "retrieval.documents.0.document.score": 0.8125,
            "retrieval.documents.1.document.id": "kb-2",
            "retrieval.documents.1.document.content": "Shipping is free.",
            "retrieval.documents.1.document.score": 0.5,
        },
    )

    page = span_page(client_for(alice), retriever)

    start = page.index('id="span-documents"')
    table = page[start : page.index("</table>", start)]
    rows = re.findall(r'<td class="mono">([^<]+)</td><td class="num">([^<]*)</td>', table)
    assert rows == [("kb-7", "0.813"), ("kb-2", "0.500")]
    assert "Refunds take 5 days." in table


def test_a_tool_span_shows_its_parameters(client_for, alice, project):
    tool = make_span(
        project,
        kind="TOOL",
        attributes={
            "tool.name": "lookup_order",
            "tool.description": "Finds an order by id",
            "tool.parameters": '{"order_id": 42}',
        },
    )

    page = span_page(client_for(alice), tool)

    facts = page[page.index('id="span-tool"') :]
    assert '<dd class="mono">lookup_order</dd>' in facts
    assert "Finds an order by id" in facts
    assert '<h4>Parameters</h4><pre class="io">{\n  &quot;order_id&quot;: 42\n}</pre>' in facts


def test_a_span_without_openinference_lists_shows_no_empty_sections(client_for, alice, project):
    page = span_page(client_for(alice), make_span(project, attributes={"x": 1}))
    assert 'id="span-messages"' not in page
    assert 'id="span-documents"' not in page
    assert 'id="span-tool"' not in page


# --- the session page ---------------------------------------------------------------


def session_url(project, session_id):
    return reverse("session-detail", args=[project.pk, session_id])


def test_the_session_page_lists_its_traces_in_order(client_for, carol, project):
    for minutes, question in ((2, "second question"), (0, "first question"), (5, "third")):
        root = make_span(
            project,
            name="turn",
            session_id="sess-9",
            start=T0 + timedelta(minutes=minutes),
            attributes={"input.value": question, "output.value": f"answer to {question}"},
        )
        make_span(project, trace_id=root.trace_id, parent=root, session_id="sess-9", name="child")
    make_span(project, session_id="other", attributes={"input.value": "not this one"})

    page = client_for(carol).get(session_url(project, "sess-9")).content.decode()

    turns = page[page.index('id="session-turns"') :]
    assert "not this one" not in turns
    assert "child" not in turns
    order = [turns.index(q) for q in ("first question", "second question", "third")]
    assert order == sorted(order)
    assert "answer to first question" in turns
    assert "3 traces in the order they started" in page


def test_the_span_page_links_to_its_session(client_for, alice, project):
    span = make_span(project, session_id="sess-9")
    assert f'href="{session_url(project, "sess-9")}"' in span_page(client_for(alice), span)


def test_an_unknown_session_is_not_found(client_for, alice, project):
    assert client_for(alice).get(session_url(project, "nope")).status_code == 404


def test_an_outsider_cannot_read_a_session(client_for, dave, project):
    make_span(project, session_id="sess-9", attributes={"input.value": "secret"})
    response = client_for(dave).get(session_url(project, "sess-9"))
    assert response.status_code == 404
    assert "secret" not in response.content.decode()
