"""HTTP adapter: FastAPI routers, auth and RFC 9457 problem documents."""
