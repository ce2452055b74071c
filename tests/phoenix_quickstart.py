"""Phoenix's quick-start, as a Phoenix user writes it: `phoenix.otel.register()`
with its defaults and the OpenInference OpenAI instrumentor, then a real `openai`
client call. Everything else comes from the environment, as Phoenix's docs say:
PHOENIX_COLLECTOR_ENDPOINT and PHOENIX_API_KEY (and OPENAI_BASE_URL/OPENAI_API_KEY
for the model). tests/test_phoenix_quickstart.py runs it in a process of its own,
so that register() sets the global tracer provider as it does for a user.

    python tests/phoenix_quickstart.py [grpc|http]
"""

from __future__ import annotations

import sys

import openai
from openinference.instrumentation.openai import OpenAIInstrumentor
from phoenix.otel import register

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def main(transport: str) -> None:
    # register()'s defaults infer gRPC (port 4317 of the endpoint's host); HTTP
    # is the protocol argument Phoenix's docs give for it.
    if transport == "http":
        tracer_provider = register(protocol="http/protobuf")
    else:
        tracer_provider = register()
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)

    client = openai.OpenAI()
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "You answer in one sentence."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        tools=[WEATHER_TOOL],
    )
    print(completion.choices[0].message.content)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Say ok."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    print("".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices))
    # register() exports each span as it ends (SimpleSpanProcessor); shutdown
    # flushes whatever a batch processor would still hold.
    tracer_provider.shutdown()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "grpc")
