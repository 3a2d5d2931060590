"""The FastAPI adapter: the only package that imports fastapi or starlette."""
