"""The HTTP and WebSocket front of calcstream: validate, publish, relay results. Never computes."""
