"""OpenTelemetry tracing: W3C trace context, spans built from request records, OTLP export."""
