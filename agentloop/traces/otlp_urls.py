from django.urls import path

from agentloop.traces.otlp_views import otlp_traces

# Mounted at `v1/traces` (agentloop/urls.py): the OTLP/HTTP default path.
urlpatterns = [path("", otlp_traces, name="otlp-traces")]
