"""The HTTP edge: REST routes, request and response bodies, error rendering, API keys and the
web canvas.
"""
