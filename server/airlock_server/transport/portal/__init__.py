"""The approval portal: a thin web adapter (Starlette, Jinja2) over the same use cases as gRPC.

It acts only as the approver signed in with a passkey, holds no privileges of its own, and every
refusal it meets is written to the event log like the gRPC interceptor does (docs/portal.md).
"""
