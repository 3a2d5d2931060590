"""The plain-asyncio core: frames, connections, rooms and routing.

Nothing here imports a web framework, Redis, Celery or the settings module;
adapters hand it plain values and objects that satisfy its small protocols.
"""
