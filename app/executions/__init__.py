"""The engine: the service runs go through, the workers that execute them, and the recorder
that turns LangGraph's task stream into push messages.
"""
